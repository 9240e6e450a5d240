// Every request the page makes goes through here, so that the bearer token, once the server has
// asked for one (a 401), goes with all of them. The token lives in sessionStorage: it survives a
// reload but not the closing of the tab, and it never leaves this page except to this server.
// Paths are relative ("v1/sessions"), so the page also works behind a proxy that adds a prefix.

const TOKEN_KEY = "poco-rt-token";
let tokenAsked = null; // a Promise while the token form is shown; every 401 waits on the same one

export class ApiError extends Error {
  constructor(path, status, detail) {
    super(`${path}: ${status} ${detail}`);
    this.status = status;
    this.detail = detail;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function askForToken(reason) {
  if (tokenAsked) return tokenAsked;
  const form = document.getElementById("token-form");
  form.querySelector(".reason").textContent = reason;
  form.hidden = false;
  form.elements.token.focus();
  tokenAsked = new Promise((resolve) => {
    form.onsubmit = (event) => {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, form.elements.token.value);
      form.hidden = true;
      tokenAsked = null;
      resolve();
    };
  });
  return tokenAsked;
}

/**
 * GET `path` (or `method` it, with `body` as JSON): its JSON, its text (`{ as: "text" }`) or the
 * Response itself (`{ as: "response" }`); asks for the token and retries on a 401, throws ApiError
 * for any other error status (its `detail`: the server's reason, as the server wrote it).
 */
export async function api(path, { as = "json", accept = "application/json", method = "GET", body } = {}) {
  for (;;) {
    const headers = { Accept: accept, ...(token() ? { Authorization: `Bearer ${token()}` } : {}) };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const json = body === undefined ? undefined : JSON.stringify(body);
    const response = await fetch(path, { method, headers, body: json, cache: "no-store" });
    if (response.status === 401) {
      await askForToken(token() ? "(the server refused the one given)" : "(this server needs one)");
      continue;
    }
    if (!response.ok) {
      const body = await response.text();
      let detail = body;
      try {
        detail = JSON.parse(body).detail ?? body;
      } catch {
        // not JSON: show the text as it came
      }
      throw new ApiError(path, response.status, typeof detail === "string" ? detail : JSON.stringify(detail));
    }
    return as === "response" ? response : as === "text" ? response.text() : response.json();
  }
}
