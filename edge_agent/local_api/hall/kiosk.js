// The ticket kiosk (取号机): pick a service and take a ticket, or check in an
// appointment with its booking code; the agent prints the ticket (and its 好差评 QR
// code where the outlet has one). Idle screens go back to the start.
import { el, followAgent, hallClient, showFault, startClock } from "/hall/hall-common.js";

const BACK_HOME_MS = 20000;
const KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "-", "0", "⌫"];
// What the citizen is told for each refusal of a check-in (the agent's codes).
const CHECK_IN_REFUSED = {
  appointment_not_found: "未找到该预约，请核对预约码后重试，或直接按业务取号",
  appointment_wrong_day: "该预约不是今天的，请按业务取号或重新预约",
  appointment_used: "该预约已签到取号，如号票遗失请咨询工作人员",
  appointment_expired: "该预约时段已过，预约已失效，请按业务取号或重新预约",
  invalid_request: "预约码格式不正确，请重新输入",
};

const fault = document.getElementById("fault");
const link = document.getElementById("link");
const reference = document.getElementById("reference");
const checkInError = document.getElementById("checkin-error");
const client = hallClient(fault);
let homeTimer = null;

function show(id) {
  for (const section of ["home", "appointment", "ticket"]) {
    document.getElementById(section).hidden = section !== id;
  }
  clearTimeout(homeTimer);
  if (id !== "home") homeTimer = setTimeout(() => show("home"), BACK_HOME_MS);
  if (id === "appointment") {
    reference.value = "";
    showFault(checkInError, "");
    reference.focus(); // a scanner types into the focused field and ends with Enter
  }
}

function showTicket(ticket) {
  document.getElementById("ticket-number").textContent = ticket.number;
  document.getElementById("ticket-service").textContent =
    ticket.appointment ? `${ticket.business_name}（预约）` : ticket.business_name;
  document.getElementById("ticket-waiting").textContent = `前面还有 ${ticket.waiting} 人等候`;
  document.getElementById("ticket-note").textContent = ticket.printed
    ? "请取走号票，留意叫号"
    : "号票未能打印，请记住您的号码，或联系工作人员";
  show("ticket");
}

async function busy(work) {
  const marker = document.getElementById("busy");
  marker.hidden = false;
  try {
    return await work();
  } finally {
    marker.hidden = true;
  }
}

async function take(code) {
  try {
    showTicket(await busy(() => client.takeTicket({ business_type: code })));
    showFault(fault, "");
  } catch (err) {
    showFault(fault, `取号失败：${err.message}。${err.hint ?? ""}`);
  }
}

async function checkIn(event) {
  event.preventDefault();
  const code = reference.value.trim();
  if (!code) return;
  try {
    showTicket(await busy(() => client.checkInAppointment({ reference: code })));
  } catch (err) {
    showFault(checkInError, CHECK_IN_REFUSED[err.code] ?? `签到失败：${err.message}`);
    reference.select();
    clearTimeout(homeTimer);
    homeTimer = setTimeout(() => show("home"), BACK_HOME_MS);
  }
}

let retryTimer = null;

async function loadServices() {
  clearTimeout(retryTimer);
  try {
    const state = await client.queueState();
    const buttons = state.business_types.map((t) => {
      const button = el("button", { type: "button", "data-business": t.code }, t.name);
      button.addEventListener("click", () => take(t.code));
      return button;
    });
    document.getElementById("services").replaceChildren(...buttons);
    showFault(fault, "");
  } catch (err) {
    showFault(fault, `暂时无法取号：${err.message}`);
    retryTimer = setTimeout(loadServices, 5000);
  }
}

for (const key of KEYS) {
  const button = el("button", { type: "button", "data-key": key }, key);
  button.addEventListener("click", () => {
    reference.value = key === "⌫" ? reference.value.slice(0, -1) : reference.value + key;
    reference.focus();
  });
  document.getElementById("keys").append(button);
}
document.getElementById("appointment-open").addEventListener("click", () => show("appointment"));
document.getElementById("checkin-form").addEventListener("submit", checkIn);
for (const back of document.querySelectorAll(".back")) back.addEventListener("click", () => show("home"));

startClock(document.getElementById("clock"));
if (client) {
  loadServices();
  // The stream tells the kiosk when the agent went away and came back (a restart may
  // bring a changed list of services): the services are read again then.
  followAgent(client, link, { onOpen: loadServices });
}
