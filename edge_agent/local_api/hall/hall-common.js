// Shared by the hall display and the kiosk: the token from the URL fragment, the client,
// the clock and a small element helper. Served by the agent at /hall/hall-common.js.
import { GovedgeLocal } from "/client/govedge-local.js";

/** The token in `#token=…` (a fragment never reaches the server or its logs). */
export function tokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token") ?? "";
  if (!token) return sessionStorage.getItem("govedge-hall-token") ?? ""; // after a reload
  // Out of sight once read (a kiosk has no address bar, but a screenshot might); kept
  // for this tab only, so a reload of the page still has it.
  sessionStorage.setItem("govedge-hall-token", token);
  history.replaceState(null, "", location.pathname);
  return token;
}

/** A client for the agent that served this page, or null (and a message) without a token. */
export function hallClient(fault) {
  const token = tokenFromFragment();
  if (!token) {
    showFault(fault, "未配置访问令牌：请技术人员按部署说明在地址后加上 #token=…");
    return null;
  }
  return new GovedgeLocal({ baseUrl: location.origin, token });
}

/**
 * Follow the agent's event stream and show the link's state in `link`: "正在重新连接…"
 * while the agent is away (restarting, or stopped), "已连接" once back. Events sent
 * while the link was down are not replayed, so `onOpen` runs at every (re)connection
 * to read the queue as the agent has it now.
 */
export function followAgent(client, link, { onEvent = () => {}, onOpen = () => {} } = {}) {
  return client.events(onEvent, {
    onState: (state) => {
      link.dataset.state = state;
      link.textContent = state === "open" ? "已连接" : "正在重新连接…";
      if (state === "open") onOpen();
    },
  });
}

export function showFault(element, text) {
  element.textContent = text;
  element.hidden = !text;
}

/** `el("li", {class: "x"}, "text", child)` */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

export function startClock(element) {
  const tick = () => {
    element.textContent = new Date().toLocaleString("zh-CN", { hour12: false });
  };
  tick();
  setInterval(tick, 1000);
}
