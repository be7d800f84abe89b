// The reference counter console: every device call goes through the JS client, exactly
// as a clerk's own web app would call it (see docs/local-api.md, "Counter console").
import { GovedgeError, GovedgeLocal } from "/client/govedge-local.js";

const STORE = "govedge.console";
const $ = (id) => document.getElementById(id);
const config = loadConfig();
let api = null;
let card = null, doc = null, txId = null, caseNumber = null;

function loadConfig() {
  let saved = {};
  try { saved = JSON.parse(localStorage.getItem(STORE) ?? "{}"); } catch { saved = {}; }
  const query = new URLSearchParams(location.search);  // kiosk: ?window=3&clerk=S007
  return { token: saved.token ?? "", window: query.get("window") ?? saved.window ?? "",
           clerk: query.get("clerk") ?? saved.clerk ?? "" };
}

// The same masking as the agent's events: the counter screen may face the citizen queue.
const maskName = (name) => (name ? name[0] + "*".repeat(Math.max(name.length - 1, 1)) : "");
const maskIdNumber = (n) => (n.length <= 8 ? "*".repeat(n.length) : n.slice(0, 4) + "*".repeat(n.length - 8) + n.slice(-4));

function showError(text) { $("error").textContent = text; $("error").hidden = !text; }

function showSetup(reason = "") {
  $("desk").hidden = true;
  $("setup").hidden = false;
  $("setup-command").textContent =
    `edge-agent apps add counter-console --origin ${location.origin} --data-dir /var/lib/govedge`;
  $("token").value = config.token;
  $("window").value = config.window;
  $("clerk").value = config.clerk;
  if (reason) showError(reason);
}

// Run one clerk action: buttons stay disabled while it runs; errors show the agent's hint.
function action(button, run) {
  $(button).addEventListener("click", async () => {
    $(button).disabled = true;
    showError("");
    try { await run(); }
    catch (err) {
      if (!(err instanceof GovedgeError)) throw err;
      showError(`${err.message}（${err.code}）— ${err.hint}`);
      if (err.status === 401 || err.code === "origin_not_allowed") showSetup(`${err.message} — ${err.hint}`);
    } finally { $(button).disabled = false; }
  });
}

// The event names a clerk meets, in words; others are shown as the agent names them.
const EVENT_LABELS = {
  "transaction.acked": "已送达平台接入端", "transaction.result": "平台已返回结果",
  "card.read": "已读卡", "document.captured": "已拍摄材料", "rating.given": "办事人已评价",
  "rating.timed_out": "评价超时", "paper.low": "取号纸将用完", "print.failed": "打印失败",
  "device.ready": "设备就绪", "device.error": "设备故障", "device.unplugged": "设备已拔出",
};

function logEvent(text) {
  const item = document.createElement("li");
  item.textContent = `${new Date().toLocaleTimeString("zh-CN")} ${text}`;
  $("events").prepend(item);
  while ($("events").children.length > 50) $("events").lastChild.remove();
}

// An operation's ``ticket`` is the one it acted on (the finished or skipped one too), so
// the window's current ticket is read back from the queue.
async function showWindow(result) {
  $("announcement").textContent = result.announcement?.text ?? "";
  for (const w of result.warnings ?? []) logEvent(`提示：${w.hint ?? w.message}`);
  await refreshQueue();
}

async function refreshQueue() {
  const state = await api.queueState();
  const mine = state.windows.find((w) => w.window === config.window);
  if (!mine) { showError(`窗口 ${config.window} 未在本机配置 — 请在设置中选择正确的窗口号`); return; }
  $("current").textContent = mine.current_ticket ?? "—";
  $("waiting").textContent = String(mine.waiting);
  await refreshQr();
}

// A window without a pad is rated by the province's QR code, shown here to the citizen:
// the filed case's number once there is one, else the current ticket's. The agent draws
// the code (SVG); a data: image runs no script.
async function refreshQr() {
  const qr = await api.evaluationQr(config.window, caseNumber ?? undefined);
  $("rate").hidden = qr.pad === null;
  $("rating-channel").textContent = qr.pad !== null ? `评价器 ${qr.pad}`
    : qr.svg ? "扫码评价" : "本窗口无评价器，暂无可评价的号票或办件";
  $("qr").hidden = !qr.svg;
  if (!qr.svg) return;
  $("qr-image").src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(qr.svg);
  $("qr-case").textContent = qr.case_number;
}

async function refreshDevices() {
  const { devices } = await api.listDevices();
  const ready = devices.filter((d) => d.state === "ready").length;
  $("devices").textContent = `设备 ${ready}/${devices.length} 就绪`;
}

function showCase(status, number) {
  $("case-status").textContent = status;
  if (number) { caseNumber = number; $("case-number").textContent = number; refreshQr().catch(() => {}); }
}

function onEvent(event) {
  if (event.type !== "event") return;
  const data = event.data ?? {};
  logEvent(`${EVENT_LABELS[event.name] ?? event.name}${event.device_id ? " · " + event.device_id : ""}`);
  // The result may come before the ack (they reach the agent by different paths): an
  // ack never takes back a case number already shown.
  if (event.name === "transaction.acked" && data.tx_id === txId && data.status !== "rejected" && !caseNumber) showCase("已送达政务服务平台接入端，等待办件编号…");
  if (event.name === "transaction.result" && data.tx_id === txId) {
    if (data.outcome === "delivered") showCase("已受理", data.case_number);
    else showCase(`被退回：${data.reason ?? data.outcome}`);
  }
  if (event.name?.startsWith("device.")) Promise.all([refreshDevices(), refreshQr()]).catch(() => {});
}

function start() {
  $("setup").hidden = true;
  $("desk").hidden = false;
  $("window-label").textContent = `${config.window} 号窗口 · 工号 ${config.clerk}`;
  api = new GovedgeLocal({ baseUrl: location.origin, token: config.token });
  api.events(onEvent, {
    onState: (state) => {
      $("stream").textContent = state === "open" ? "已连接" : "重新连接中…";
      $("stream").classList.toggle("open", state === "open");
      // A result sent while the stream was down is not replayed: ask for it once.
      if (state === "open" && txId && !caseNumber) api.transactionStatus(txId).then((t) => {
        if (t.status === "delivered") showCase("已受理", t.case_number);
      }).catch(() => {});
    },
  });
  Promise.all([refreshQueue(), refreshDevices()]).catch((err) => {
    if (err instanceof GovedgeError) {
      showError(`${err.message}（${err.code}）— ${err.hint}`);
      if (err.status === 401 || err.code === "origin_not_allowed") showSetup(`${err.message} — ${err.hint}`);
    }
  });
}

action("call", async () => showWindow(await api.windowCall(config.window)));
action("recall", async () => showWindow(await api.windowRecall(config.window)));
action("skip", async () => showWindow(await api.windowSkip(config.window)));
action("finish", async () => showWindow(await api.windowFinish(config.window)));

action("read-card", async () => {
  card = await api.readIdCard();
  $("card-name").textContent = maskName(card.name);
  $("card-number").textContent = maskIdNumber(card.id_number);
});

action("capture", async () => {
  doc = await api.captureDocument();
  $("doc-image").src = "data:image/jpeg;base64," + doc.jpeg_base64;
  $("doc-image").hidden = false;
  $("doc-info").textContent = `${doc.width}×${doc.height}，${Math.round(doc.size / 1024)} KiB`;
});

action("submit", async () => {
  if (!card) { showError("请先读身份证"); return; }
  if (!doc) { showError("请先拍摄材料"); return; }
  caseNumber = null;
  $("case-number").textContent = "—";
  // The client makes the Idempotency-Key and reuses it if the call is retried.
  const accepted = await api.submit({
    item_code: $("item-code").value, region_code: $("region-code").value,
    window: config.window, clerk: config.clerk,
    applicant: { name: card.name, id_number: card.id_number },
    materials: [{ name: $("material-name").value, document_id: doc.document_id }],
  });
  txId = accepted.tx_id;
  showCase(`已保存（${txId}），等待办件编号…`);
});

action("rate", async () => {
  if (!caseNumber) { showError("请先提交办件并等待办件编号"); return; }
  $("rating").textContent = "请办事人在评价器上评价…";
  const result = await api.evaluate({ window: config.window, case_number: caseNumber,
                                      staff_id: config.clerk, item_code: $("item-code").value });
  $("rating").textContent = ratingText(result);
});

// A walk-away is no rating; the region's profile may give the case a default one instead.
function ratingText(result) {
  if (result.status === "rated") return `${"★".repeat(result.stars ?? 0)} ${result.satisfaction ?? ""}`;
  const byDefault = result.default_rating;
  if (!byDefault) return result.status === "timed_out" ? "评价超时" : "评价已取消";
  const kind = byDefault.stars >= 4 ? "默认好评" : "默认评价";
  if (byDefault.state === "recorded") return `未评价，已记${kind}（${byDefault.stars}星）`;
  const at = new Date(byDefault.due_at).toLocaleTimeString("zh-CN", { hour: "2-digit", minute: "2-digit" });
  return `未评价，将于 ${at} 记${kind}（${byDefault.stars}星）`;
}

$("fullscreen").addEventListener("click", () => document.documentElement.requestFullscreen?.());
$("settings-open").addEventListener("click", () => showSetup());
$("setup-form").addEventListener("submit", (e) => {
  e.preventDefault();
  Object.assign(config, { token: $("token").value.trim(), window: $("window").value.trim(),
                          clerk: $("clerk").value.trim() });
  localStorage.setItem(STORE, JSON.stringify(config));
  location.reload();  // one start path: a fresh page with the saved settings
});

if (config.token && config.window && config.clerk) start(); else showSetup();
