/*
 * Keyway's Connect UI: the page behind nango.openConnectUI({ baseURL: "<gateway>/connect-ui", ... }).
 *
 * The protocol is the frontend SDK's (0.71): this page posts {type: "ready"} to its parent, which
 * answers {type: "session_token", sessionToken}; the page then reports {type: "connect", payload:
 * {providerConfigKey, connectionId, isPending}}, {type: "error", payload: {errorType, errorMessage}} and
 * {type: "close"} (the SDK hands each to the app's onEvent, and removes the iframe on close). Opened in
 * a tab instead, the page takes the token from its own query (?session_token=).
 *
 * With the token it calls the gateway it was served from: GET connect/session and
 * connect/session/integrations (Bearer token), then the frontend SDK's routes with
 * connect_session_token in the query: a form mode's POST (api-auth/api-key/<key>, ...), or a popup
 * mode's oauth/connect/<key> with the ws_client_id of the WebSocket at the gateway's root, which
 * tells how the popup ended.
 */
(function () {
  "use strict";

  const query = new URLSearchParams(window.location.search);
  const embedded = window.parent !== window;
  const detectClosedAuthWindow = query.get("detectClosedAuthWindow") === "true";
  const base = apiBase();
  const NO_TOKEN_AFTER_MS = 10000; // a parent that has not sent a token by then never will
  const CLOSED_GRACE_MS = 1500; // a closing popup's result frame may still be on its way
  const SDK_ERROR_TYPES = new Set([
    "missing_auth_token", "blocked_by_browser", "invalid_host_url", "missing_credentials", "window_closed",
    "connection_test_failed", "missing_connect_session_token", "connection_validation_failed",
    "resource_capped", "unknown_error",
  ]);

  const el = {
    title: document.getElementById("title"),
    view: document.getElementById("view"),
    notice: document.getElementById("notice"),
    back: document.getElementById("back"),
    close: document.getElementById("close"),
  };
  const state = { token: null, parentOrigin: "*", integrations: [], current: null, busy: false, abort: null };

  // The API is the gateway that serves this page (one level up from connect-ui/). The SDK's apiURL is
  // only followed when it names this same origin: a framing page could otherwise send what the user
  // types here to a server of its choice.
  function apiBase() {
    const own = new URL("../", window.location.href);
    const given = query.get("apiURL");
    if (given) {
      try {
        const url = new URL(given);
        if (url.origin === window.location.origin) {
          return new URL(url.pathname.replace(/\/*$/, "/"), url.origin);
        }
      } catch (_error) {
        // not a URL: the page's own gateway
      }
    }
    return own;
  }

  function post(message) {
    if (embedded) window.parent.postMessage(message, state.parentOrigin);
  }

  function reportError(errorType, errorMessage) {
    post({ type: "error", payload: { errorType: SDK_ERROR_TYPES.has(errorType) ? errorType : "unknown_error", errorMessage } });
  }

  function close() {
    if (state.abort) state.abort();
    post({ type: "close" });
  }

  // ---- rendering (text only: nothing from the network becomes markup) ----

  function node(tag, attrs, children) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === false || value === null || value === undefined) continue;
      if (name === "text") element.textContent = value;
      else element.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children || []) element.append(child);
    return element;
  }

  function show(title, children, { back = false } = {}) {
    el.title.textContent = title;
    el.back.hidden = !back;
    el.view.replaceChildren(...children);
  }

  function notice(message) {
    el.notice.textContent = message || "";
    el.notice.hidden = !message;
  }

  // ---- the gateway ----

  async function api(path, options) {
    let response;
    try {
      response = await fetch(new URL(path, base), options);
    } catch (_error) {
      throw { code: "unknown_error", message: "The server could not be reached." };
    }
    let body = null;
    try {
      body = await response.json();
    } catch (_error) {
      body = null;
    }
    if (!response.ok) {
      const inner = body && typeof body.error === "object" && body.error ? body.error : {};
      throw {
        code: inner.code || (body && body.type) || "unknown_error",
        message: inner.message || (typeof (body && body.error) === "string" ? body.error : "") ||
          "The request failed (HTTP " + response.status + ").",
        status: response.status,
      };
    }
    return body;
  }

  function bearer() {
    return { headers: { Authorization: "Bearer " + state.token } };
  }

  function connectQuery(params) {
    const search = new URLSearchParams({ connect_session_token: state.token });
    for (const [name, value] of Object.entries(params)) {
      if (value !== "") search.set("params[" + name + "]", value);
    }
    return search;
  }

  // ---- the session ----

  async function start(token) {
    state.token = token;
    notice("");
    show("Connect", [node("p", { class: "muted", text: "Loading…" })]);
    try {
      await api("connect/session", bearer());
      const listed = await api("connect/session/integrations", bearer());
      state.integrations = Array.isArray(listed.data) ? listed.data : [];
    } catch (error) {
      const expired = error.status === 401;
      const message = expired ? "This connect session has expired or was already used. Start again from the app."
        : error.message;
      show("Connect", [node("p", { text: message })]);
      reportError(expired ? "missing_connect_session_token" : error.code, message);
      return;
    }
    if (state.integrations.length === 1) {
      choose(state.integrations[0]);
    } else {
      list();
    }
  }

  function list() {
    state.current = null;
    notice("");
    if (state.integrations.length === 0) {
      show("Connect", [node("p", { text: "There is no integration to connect." })]);
      return;
    }
    const items = state.integrations.map((integration) => {
      const button = node("button", { type: "button", "data-key": integration.unique_key }, [
        node("span", { text: integration.display_name }),
        node("span", { class: "mode", text: integration.auth_mode }),
      ]);
      button.addEventListener("click", () => choose(integration));
      return node("li", {}, [button]);
    });
    show("Select an integration", [node("ul", { class: "integrations" }, items)]);
  }

  // ---- one integration: its form (credentials and configuration) and how it is sent ----

  function input(name, { label, kind = "text", required = true, hint = "", pattern = "" }) {
    const control = kind === "textarea"
      ? node("textarea", { name, required, autocomplete: "off", spellcheck: "false" })
      : node("input", { name, type: kind === "password" ? "password" : "text", required, autocomplete: "off",
        placeholder: hint || null, pattern: pattern || null });
    return node("label", {}, [node("span", { text: label }), control]);
  }

  function choose(integration) {
    state.current = integration;
    notice("");
    const multiple = state.integrations.length > 1;
    const name = integration.display_name;
    if (!integration.flow) {
      show(name, [node("p", { text: integration.auth_mode + " connections cannot be made here." })], { back: multiple });
      return;
    }
    const fields = (integration.fields || []).map((f) =>
      input("credentials." + f.name, { label: f.label, kind: f.kind, required: f.required }));
    const params = (integration.params || []).map((p) =>
      input("params." + p.name, { label: p.title, required: !p.optional, hint: p.example, pattern: p.pattern }));
    const submit = node("button", { type: "submit", class: "primary", text: "Connect " + name });
    const form = node("form", { novalidate: false }, [...fields, ...params, submit]);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (state.busy) return;
      const values = { credentials: {}, params: {} };
      for (const [key, value] of new FormData(form).entries()) {
        const [group, field] = key.split(/\.(.*)/s);
        values[group][field] = String(value);
      }
      // The popup opens now, inside the click: a browser blocks one opened after an await.
      if (integration.flow === "popup") popupFlow(integration, values.params, submit);
      else formFlow(integration, values, submit);
    });
    const intro = integration.flow === "popup"
      ? node("p", { class: "muted", text: "A window opens where you sign in to " + name + "." })
      : node("p", { class: "muted", text: "Enter your " + name + " details." });
    show("Connect " + name, [intro, form], { back: multiple });
  }

  function working(submit, busy) {
    state.busy = busy;
    submit.disabled = busy;
  }

  function connected(result) {
    const payload = { providerConfigKey: result.providerConfigKey, connectionId: result.connectionId };
    if (typeof result.isPending === "boolean") payload.isPending = result.isPending;
    post({ type: "connect", payload });
    const done = node("button", { type: "button", class: "primary", text: "Done" });
    done.addEventListener("click", close);
    show("Connected", [
      node("div", { class: "done" }, [
        node("div", { class: "mark", text: "✓" }),
        node("p", { text: (state.current ? state.current.display_name : "The account") + " is connected." }),
      ]),
      ...(embedded ? [done] : [node("p", { class: "muted", text: "You can close this tab." })]),
    ]);
  }

  function failed(code, message) {
    notice(message);
    reportError(code, message);
  }

  async function formFlow(integration, values, submit) {
    working(submit, true);
    notice("");
    try {
      const path = integration.form_path.replace("{providerConfigKey}", encodeURIComponent(integration.unique_key)) + "?" +
        connectQuery(values.params).toString();
      const result = await api(path, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(values.credentials),
      });
      connected(result);
    } catch (error) {
      failed(error.code, error.message);
    } finally {
      working(submit, false);
    }
  }

  function popupFlow(integration, params, submit) {
    const popup = window.open("", "_blank", popupFeatures(500, 600));
    if (!popup || popup.closed) {
      failed("blocked_by_browser", "The browser blocked the sign-in window. Allow pop-ups and try again.");
      return;
    }
    working(submit, true);
    notice("");
    let settled = false;
    let socket = null;
    let timer = null;
    let closedAt = 0;
    const finish = (error, result) => {
      if (settled) return;
      settled = true;
      state.abort = null;
      if (timer) clearInterval(timer);
      if (socket) socket.close();
      working(submit, false);
      if (error) {
        try {
          if (!popup.closed) popup.close();
        } catch (_ignored) {
          // already gone
        }
        failed(error.code, error.message);
      } else {
        connected(result);
      }
    };
    state.abort = () => finish({ code: "window_closed", message: "The connection was cancelled." });
    if (detectClosedAuthWindow) {
      timer = setInterval(() => {
        if (settled || !popup.closed) return;
        closedAt = closedAt || Date.now();
        if (Date.now() - closedAt >= CLOSED_GRACE_MS) {
          finish({ code: "window_closed", message: "The sign-in window was closed before the connection was made." });
        }
      }, 250);
    }
    const target = new URL("oauth/connect/" + encodeURIComponent(integration.unique_key), base);
    target.search = connectQuery(params).toString();
    const wsUrl = new URL(base.href);
    wsUrl.protocol = wsUrl.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(wsUrl.href);
    socket.onmessage = (event) => {
      let data;
      try {
        data = JSON.parse(event.data);
      } catch (_error) {
        return;
      }
      if (data.message_type === "connection_ack") {
        if (popup.closed) return; // the closed-window check settles it
        target.searchParams.set("ws_client_id", data.ws_client_id);
        popup.location.href = target.href;
      } else if (data.message_type === "success") {
        finish(null, { providerConfigKey: data.provider_config_key, connectionId: data.connection_id,
          isPending: Boolean(data.is_pending) });
      } else if (data.message_type === "error") {
        finish({ code: data.error_type, message: data.error_desc || "The authorization failed." });
      }
    };
    socket.onerror = () => finish({ code: "unknown_error", message: "The server could not be reached." });
    socket.onclose = () => setTimeout(() => finish({ code: "unknown_error",
      message: "The connection to the server closed before the authorization finished." }), 100);
  }

  function popupFeatures(width, height) {
    const screen = window.screen || { width, height };
    const w = Math.min(width, screen.width);
    const h = Math.min(height, screen.height);
    const left = Math.max(screen.width / 2 - w / 2, 0);
    const top = Math.max(screen.height / 2 - h / 2, 0);
    return "width=" + w + ",height=" + h + ",left=" + left + ",top=" + top + ",scrollbars=yes,resizable=yes";
  }

  // ---- the handshake ----

  window.addEventListener("message", (event) => {
    // Only the frame that embeds this page hands it a token; what it sends next goes back to its origin.
    if (!embedded || event.source !== window.parent) return;
    const data = event.data;
    if (!data || typeof data !== "object" || data.type !== "session_token") return;
    if (typeof data.sessionToken !== "string" || !data.sessionToken) return;
    state.parentOrigin = event.origin && event.origin !== "null" ? event.origin : "*";
    if (data.sessionToken !== state.token) start(data.sessionToken);
  });
  el.close.addEventListener("click", close);
  el.back.addEventListener("click", () => {
    if (!state.busy) list();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") close();
  });

  post({ type: "ready" });
  const inUrl = query.get("session_token");
  if (inUrl) {
    start(inUrl);
  } else {
    const waited = () => {
      if (state.token) return;
      show("Connect", [node("p", { text: "Open this page from your app: it starts the connection." })]);
    };
    if (embedded) setTimeout(waited, NO_TOKEN_AFTER_MS);
    else waited();
  }
})();
