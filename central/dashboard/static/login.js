/* rftwin login: exchange a viewer or operator token for the dashboard's session cookie.
   The token goes once, as JSON (a cross-site form cannot post JSON); the cookie is HttpOnly. */
(() => {
  "use strict";
  const form = document.getElementById("login-form");
  const error = document.getElementById("login-error");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    const token = document.getElementById("token").value.trim();
    try {
      const resp = await fetch("api/v1/session", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token }), credentials: "same-origin",
      });
      if (resp.status === 201) { window.location.replace("./"); return; }
      let detail = `HTTP ${resp.status}`;
      try { detail = (await resp.json()).detail || detail; } catch (_) { /* not JSON */ }
      error.textContent = resp.status === 401 ? "Unknown or wrong token." : detail;
    } catch (err) {
      error.textContent = `Cannot reach the central unit (${err.message}).`;
    }
    error.hidden = false;
  });
})();
