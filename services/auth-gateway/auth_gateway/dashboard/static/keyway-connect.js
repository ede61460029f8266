/*!
 * Keyway connect: the connect protocol of Nango's frontend SDK in one small script, no build step.
 *
 *   <script src="https://<your gateway>/sdk/keyway-connect.js"></script>
 *   const keyway = new KeywayConnect({ host: "https://<your gateway>", publicKey: "<public key>" });
 *   // or { host, connectSessionToken: "<token>" }, or a function returning a token (or a promise of one);
 *   // with a session, give no connection id: the gateway names the connection (or the session fixes it)
 *   keyway.auth("github", "customer-1").then(
 *     ({ providerConfigKey, connectionId }) => …,
 *     (error) => console.warn(error.type, error.message));             // error is a KeywayConnect.AuthError
 *   keyway.auth("posthog", "customer-2", { credentials: { apiKey: "…" }, params: { subdomain: "eu" } });
 *   keyway.create("unauthenticated", "customer-3");
 *   KeywayConnect.redirect(link.url);   // redirect mode: the whole tab goes to a connect link (no popup)
 *
 * Popup flows open the window at once (inside the click, so popup blockers allow it), open the
 * WebSocket at the gateway's root, send the popup to /oauth/connect/<key> with the socket's
 * ws_client_id, and settle on the one success or error frame. A popup closed before the end
 * rejects with type "windowClosed" (turn off with detectClosedAuthWindow: false, e.g. for a provider
 * whose pages cut the link to their opener). Credential flows POST JSON to the same endpoints the SDK
 * uses; errors carry the gateway's error code as `type`.
 */
(function (global) {
  "use strict";

  class AuthError extends Error {
    constructor(message, type) {
      super(message);
      this.name = "AuthError";
      this.type = type;
    }
  }

  const CLOSED_GRACE_MS = 1500; // the result frame may still be on its way when the popup closes itself

  class KeywayConnect {
    constructor(config) {
      config = config || {};
      if (!config.publicKey && !config.connectSessionToken) {
        throw new AuthError("You must specify a public key or a connect session token.", "missingPublicKey");
      }
      const host = String(config.host || global.location.origin).replace(/\/+$/, "");
      try {
        const base = new URL(host);
        this.websocketUrl = new URL(config.websocketsPath || "/", base).toString().replace(/^http/, "ws");
      } catch (_error) {
        throw new AuthError("Invalid URL provided for the Keyway host.", "invalidHostUrl");
      }
      this.host = host;
      this.publicKey = config.publicKey || null;
      this.connectSessionToken = config.connectSessionToken || null;
      this.width = config.width || 500;
      this.height = config.height || 600;
      this.busy = false;
    }

    auth(providerConfigKey, connectionId, options) {
      if (connectionId !== null && typeof connectionId === "object") {
        options = connectionId;
        connectionId = null;
      }
      options = options || {};
      const credentials = options.credentials || {};
      const names = Object.keys(credentials);
      const overridesOnly = names.every((n) => n === "oauth_client_id_override" || n === "oauth_client_secret_override");
      if (names.length > 0 && !overridesOnly) {
        return this._credentials(providerConfigKey, connectionId, options);
      }
      return this._popup(providerConfigKey, connectionId, options);
    }

    // Redirect mode: the whole tab goes to a connect link (POST /connect/links, from your backend) and
    // comes back to its return_url with a signed outcome. Takes the link's url, or its token (this
    // instance's connectSessionToken when none is given).
    redirect(link) {
      const target = link || this.connectSessionToken;
      if (!target || typeof target !== "string") {
        throw new AuthError("Give the connect link's url or token (from POST /connect/links).", "missingConnectLink");
      }
      global.location.assign(/^https?:/i.test(target) ? target : this.host + "/connect/link/" + encodeURIComponent(target));
    }

    create(providerConfigKey, connectionId, options) {
      if (connectionId !== null && typeof connectionId === "object") {
        options = connectionId;
        connectionId = null;
      }
      return this._send("/auth/unauthenticated/", providerConfigKey, connectionId, options || {}, {});
    }

    async _token() {
      const given = this.connectSessionToken;
      if (!given) return null;
      const token = typeof given === "function" ? await given() : given;
      if (!token) throw new AuthError("No connect session token was given.", "missingConnectSessionToken");
      return String(token);
    }

    _query(connectionId, options, token) {
      const query = new URLSearchParams();
      if (connectionId) query.set("connection_id", connectionId);
      if (token) query.set("connect_session_token", token);
      else query.set("public_key", this.publicKey);
      for (const [name, value] of Object.entries(options.params || {})) {
        if (typeof value === "string") query.set("params[" + name + "]", value);
      }
      if (options.hmac) query.set("hmac", options.hmac);
      if (Array.isArray(options.user_scope)) query.set("user_scope", options.user_scope.join(","));
      const credentials = options.credentials || {};
      for (const name of ["oauth_client_id_override", "oauth_client_secret_override"]) {
        if (name in credentials) query.set("credentials[" + name + "]", credentials[name]);
      }
      const authorizationParams = options.authorization_params || {};
      for (const name of Object.keys(authorizationParams)) {
        const value = authorizationParams[name];
        // The value undefined removes a default of the provider's template, as the SDK sends it.
        query.set("authorization_params[" + name + "]", value === undefined ? "undefined" : String(value));
      }
      return "?" + query.toString();
    }

    _credentials(providerConfigKey, connectionId, options) {
      const c = options.credentials;
      if (c.type === "TWO_STEP") {
        // Fields that differ by provider, exchanged for a token: sent as they are, as Nango's SDK sends them.
        return this._send("/auth/two-step/", providerConfigKey, connectionId, options, c);
      }
      if ("apiKey" in c) {
        return this._send("/api-auth/api-key/", providerConfigKey, connectionId, options, { apiKey: c.apiKey || "" });
      }
      if ("privateKeyId" in c && "issuerId" in c && "privateKey" in c) {
        const body = { privateKeyId: c.privateKeyId, issuerId: c.issuerId, privateKey: c.privateKey };
        if (c.scope) body.scope = c.scope;
        return this._send("/app-store-auth/", providerConfigKey, connectionId, options, body);
      }
      if ("client_id" in c && "client_secret" in c) {
        const body = { client_id: c.client_id, client_secret: c.client_secret };
        return this._send("/oauth2/auth/", providerConfigKey, connectionId, options, body);
      }
      if ("username" in c || "password" in c) {
        const body = { username: c.username || "", password: c.password || "" };
        return this._send("/api-auth/basic/", providerConfigKey, connectionId, options, body);
      }
      return Promise.reject(new AuthError("These credentials fit no auth mode.", "invalid_credentials"));
    }

    async _send(path, providerConfigKey, connectionId, options, body) {
      const token = await this._token();
      const url = this.host + path + encodeURIComponent(providerConfigKey) + this._query(connectionId, options, token);
      let response;
      try {
        response = await fetch(url, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(body),
        });
      } catch (_error) {
        throw new AuthError("Could not reach the Keyway host.", "network_error");
      }
      let data = null;
      try {
        data = await response.json();
      } catch (_error) {
        data = null;
      }
      if (!response.ok) throw errorOf(data, response.status);
      return data;
    }

    _popup(providerConfigKey, connectionId, options) {
      if (this.busy) {
        return Promise.reject(new AuthError("The authorization window is already opened", "windowIsOpened"));
      }
      const popup = global.open("", "_blank", this._features());
      if (!popup || popup.closed) {
        return Promise.reject(new AuthError("Modal blocked by browser", "blocked_by_browser"));
      }
      try {
        popup.document.title = "Connecting…";
        popup.document.body.textContent = "Connecting…";
      } catch (_error) {
        // a browser that opened it cross-origin: nothing to write, the flow goes on
      }
      this.busy = true;
      return new Promise((resolve, reject) => {
        let settled = false;
        let socket = null;
        let timer = null;
        let closedAt = 0;
        const finish = (error, result) => {
          if (settled) return;
          settled = true;
          this.busy = false;
          if (timer) clearInterval(timer);
          if (socket) socket.close();
          if (error) {
            try {
              if (!popup.closed) popup.close();
            } catch (_ignored) {
              // already gone
            }
            reject(error);
          } else {
            resolve(result);
          }
        };
        if (options.detectClosedAuthWindow !== false) {
          timer = setInterval(() => {
            if (settled || !popup.closed) return;
            closedAt = closedAt || Date.now();
            if (Date.now() - closedAt >= CLOSED_GRACE_MS) {
              finish(new AuthError(
                "The authorization window was closed before the authorization flow was completed", "windowClosed"));
            }
          }, 250);
        }
        this._token().then((token) => {
          if (settled) return;
          const url = this.host + "/oauth/connect/" + encodeURIComponent(providerConfigKey) +
            this._query(connectionId, options, token);
          socket = new WebSocket(this.websocketUrl);
          socket.onmessage = (event) => {
            let data;
            try {
              data = JSON.parse(event.data);
            } catch (_error) {
              return;
            }
            if (data.message_type === "connection_ack") {
              if (popup.closed) return; // the closed-window check settles it
              popup.location.href = url + "&ws_client_id=" + encodeURIComponent(data.ws_client_id);
            } else if (data.message_type === "success") {
              finish(null, {
                providerConfigKey: data.provider_config_key,
                connectionId: data.connection_id,
                isPending: Boolean(data.is_pending),
              });
            } else if (data.message_type === "error") {
              finish(new AuthError(data.error_desc, data.error_type));
            }
          };
          socket.onerror = () => finish(new AuthError("Could not reach the Keyway host.", "network_error"));
          socket.onclose = () => {
            setTimeout(() => finish(new AuthError(
              "The connection to the Keyway host closed before the authorization finished.", "network_error")), 100);
          };
        }, (error) => {
          finish(error instanceof AuthError ? error : new AuthError(String((error && error.message) || error),
            "missingConnectSessionToken"));
        });
      });
    }

    _features() {
      const screen = global.screen || { width: this.width, height: this.height };
      const width = Math.min(this.width, screen.width);
      const height = Math.min(this.height, screen.height);
      const left = Math.max(screen.width / 2 - width / 2, 0);
      const top = Math.max(screen.height / 2 - height / 2, 0);
      return "width=" + width + ",height=" + height + ",left=" + left + ",top=" + top + ",scrollbars=yes,resizable=yes";
    }
  }

  function errorOf(data, status) {
    // Both shapes the gateway's envelope offers: {error: {code, message}} and the top-level type.
    const inner = data && data.error;
    if (inner && typeof inner === "object") {
      return new AuthError(inner.message || inner.code, inner.code || data.type || "request_error");
    }
    const type = (data && data.type) || "request_error";
    return new AuthError(typeof inner === "string" ? inner : "The request failed with HTTP " + status, type);
  }

  KeywayConnect.redirect = function (url) {
    if (!/^https?:/i.test(String(url || ""))) {
      throw new AuthError("Give the connect link's url (from POST /connect/links).", "missingConnectLink");
    }
    global.location.assign(String(url));
  };
  KeywayConnect.AuthError = AuthError;
  global.KeywayConnect = KeywayConnect;
})(window);
