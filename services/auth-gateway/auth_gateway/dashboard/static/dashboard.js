/* The dashboard's progressive JavaScript: copy buttons, the catalog's filter as you type, and the
   Connect form, which runs the real connect flow through /sdk/keyway-connect.js and then refreshes
   the connection list in place. Every page works without it except Connect, which is the SDK's flow. */
(function () {
  "use strict";
  const main = document.getElementById("main");
  const live = document.getElementById("live");

  function announce(text) {
    if (live) live.textContent = text;
  }

  // Copy buttons: data-copy names the element whose text (or value) to copy.
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const target = document.getElementById(button.dataset.copy);
    if (!target) return;
    const text = "value" in target && target.tagName === "INPUT" ? target.value : target.textContent.trim();
    const selectIt = () => {
      const range = document.createRange();
      range.selectNodeContents(target);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      announce("Selected: press Ctrl+C (or ⌘C) to copy.");
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(() => announce("Copied."), selectIt);
    } else {
      selectIt();
    }
  });

  // The catalog: filter the list as the search box changes (the form still searches on the server).
  for (const input of document.querySelectorAll("[data-filter-list]")) {
    const list = document.getElementById(input.dataset.filterList);
    const count = list && document.getElementById(list.dataset.count);
    input.addEventListener("input", () => {
      const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      let shown = 0;
      for (const item of list.children) {
        const match = words.every((w) => item.dataset.name.includes(w));
        item.hidden = !match;
        if (match) shown += 1;
      }
      if (count) count.textContent = shown + " provider(s)" + (words.length ? " matching “" + input.value + "”." : ".");
    });
  }

  // The session fixes the connection id: with a session token the browser may not name one.
  async function connectSession(url, connectionId) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": main.dataset.csrf },
      body: JSON.stringify({ connection_id: connectionId }),
    });
    const data = await response.json();
    if (!response.ok) {
      throw new KeywayConnect.AuthError(data.error.message || data.error.code, data.error.code);
    }
    return data.token;
  }

  async function refreshRegion(id) {
    const response = await fetch(window.location.href, { credentials: "same-origin" });
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html").getElementById(id);
    const current = document.getElementById(id);
    if (fresh && current) current.replaceChildren(...fresh.childNodes);
  }

  function randomId() {
    const bytes = new Uint8Array(3);
    crypto.getRandomValues(bytes);
    return "test-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  for (const form of document.querySelectorAll("form[data-connect]")) {
    let running = false;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (running || typeof KeywayConnect === "undefined") return;
      const status = form.querySelector("[data-connect-status]");
      const say = (text) => {
        status.textContent = text;
      };
      const key = form.dataset.integration;
      const idInput = form.querySelector("#connection_id");
      const connectionId = idInput.value.trim();
      const params = {};
      for (const input of form.querySelectorAll("[data-param]")) {
        if (input.value.trim()) params[input.dataset.param] = input.value.trim();
      }
      const credentials = {};
      for (const input of form.querySelectorAll("[data-credential]")) credentials[input.dataset.credential] = input.value;
      if (form.dataset.credentialsType) credentials.type = form.dataset.credentialsType;
      const keyway = new KeywayConnect({
        // The gateway's public side: the same origin, unless the dashboard is on the admin port.
        host: main.dataset.publicUrl || window.location.origin,
        connectSessionToken: () => connectSession(form.dataset.sessionUrl, connectionId),
      });
      // Called synchronously inside the submit: the popup opens within the user's gesture.
      let flow;
      if (form.dataset.kind === "popup") flow = keyway.auth(key, null, { params });
      else if (form.dataset.kind === "none") flow = keyway.create(key, null, { params });
      else flow = keyway.auth(key, null, { params, credentials });
      running = true;
      form.setAttribute("aria-busy", "true");
      say(form.dataset.kind === "popup" ? "Waiting for the provider's window…" : "Connecting…");
      flow
        .then(async (result) => {
          say("Connected: " + result.connectionId + ".");
          await refreshRegion(form.dataset.region);
          for (const input of form.querySelectorAll("[data-credential]")) input.value = "";
          idInput.value = randomId();
        }, (error) => {
          say("Failed (" + (error.type || "error") + "): " + error.message);
        })
        .finally(() => {
          running = false;
          form.removeAttribute("aria-busy");
        });
    });
  }
})();
