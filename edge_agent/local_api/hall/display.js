// The hall display (叫号大屏): each window's current ticket, the recent calls and the
// waiting counts, live over the event stream; each call's announcement is played in
// the order the calls came, one at a time (a call arriving while one plays waits).
import { el, followAgent, hallClient, showFault, startClock } from "/hall/hall-common.js";

const RECENT_KEPT = 8;
const LONGEST_ANNOUNCEMENT_MS = 30000; // a stalled audio element never blocks the queue
const CALLING = new Set(["call", "recall", "call-back"]);

const fault = document.getElementById("fault");
const link = document.getElementById("link");
const banner = document.getElementById("announcing");
const unmute = document.getElementById("unmute");
const voice = document.getElementById("voice");
const client = hallClient(fault);
const pending = []; // {text, url} waiting to be spoken
let speaking = false;

function renderWindows(windows) {
  const rows = windows.map((w) => {
    const shown = w.paused ? "暂停服务" : w.current_ticket ?? "—";
    return el("tr", { "data-window": w.window }, el("td", {}, `${w.window}号窗口`),
      el("td", { class: "ticket" }, shown));
  });
  document.querySelector("#windows tbody").replaceChildren(...rows);
}

function renderWaiting(types) {
  const items = types.map((t) => el("li", { "data-business": t.code },
    el("span", { class: "name" }, t.name), el("span", { class: "count" }, String(t.waiting))));
  document.getElementById("waiting").replaceChildren(...items);
}

async function refresh() {
  try {
    const state = await client.queueState();
    renderWindows(state.windows);
    renderWaiting(state.business_types);
    showFault(fault, "");
  } catch (err) {
    showFault(fault, `无法读取排队信息：${err.message}`);
  }
}

function addRecent(ticket, window) {
  const list = document.getElementById("recent");
  list.prepend(el("li", { "data-ticket": ticket }, `${ticket} → ${window}号窗口`));
  while (list.children.length > RECENT_KEPT) list.lastElementChild.remove();
}

async function speak({ text, url }) {
  banner.textContent = text;
  banner.hidden = false;
  const answer = await fetch(url, { headers: { Authorization: `Bearer ${client.token}` } });
  if (!answer.ok) throw new Error(`announcement ${answer.status}`);
  const source = URL.createObjectURL(await answer.blob());
  try {
    voice.src = source;
    const ended = new Promise((resolve, reject) => {
      voice.onended = resolve;
      voice.onerror = () => reject(new Error("the announcement audio could not be played"));
      setTimeout(resolve, LONGEST_ANNOUNCEMENT_MS);
    });
    await voice.play();
    await ended;
  } finally {
    URL.revokeObjectURL(source);
  }
}

async function speakNext() {
  if (speaking || pending.length === 0) return;
  speaking = true;
  const item = pending.shift();
  try {
    await speak(item);
  } catch (err) {
    if (err.name === "NotAllowedError") {
      // The browser blocks sound until someone touches the screen (docs/hall-pages.md).
      unmute.hidden = false;
      pending.unshift(item);
      speaking = false;
      return;
    }
    console.warn("announcement not played", err);
    document.body.dataset.unspoken = String(Number(document.body.dataset.unspoken ?? 0) + 1);
  }
  // How many announcements are done with (played, or given up: `unspoken` counts those).
  document.body.dataset.spoken = String(Number(document.body.dataset.spoken) + 1);
  banner.hidden = pending.length === 0;
  speaking = false;
  speakNext();
}

unmute.addEventListener("click", () => {
  unmute.hidden = true;
  speakNext();
});

function onEvent(message) {
  if (message.type !== "event") return;
  if (message.name === "ticket.issued") {
    refresh();
    return;
  }
  if (message.name !== "window.result") return;
  const result = message.data;
  const ticket = result.ticket?.number;
  if (CALLING.has(result.operation) && ticket) {
    addRecent(ticket, result.window);
    const announcement = result.announcement;
    if (announcement?.audio_url) {
      pending.push({ text: announcement.text, url: announcement.audio_url });
      speakNext();
    }
  }
  refresh(); // the windows' rows and the counts, as the agent has them now
}

startClock(document.getElementById("clock"));
if (client) {
  refresh();
  // Reconnected: re-read what happened while the link was down.
  followAgent(client, link, { onEvent, onOpen: refresh });
}
