// The clerk page of docs/local-api.md ("JavaScript client") written in TypeScript, as an
// app that ships its own copy of the client would. tests/local_api/test_js_client_types.py
// compiles it with `tsc --strict` beside a copy of govedge-local.d.ts, so a declaration
// that does not fit this use (a missing field, a wrong result type) fails there.
import { GovedgeError, GovedgeLocal, newIdempotencyKey } from "./govedge-local.js";
import type { DocumentPublic, EvaluationPublic, IdCardPublic, LocalEvent } from "./govedge-local.js";

declare const APP_TOKEN: string;

const api = new GovedgeLocal({ baseUrl: "http://127.0.0.1:8765", token: APP_TOKEN });
const status = (text: string): void => {
  const line = document.getElementById("status");
  if (line) line.textContent = text;
};
let card: IdCardPublic | null = null;
let doc: DocumentPublic | null = null;
let txId: string | null = null;

const stream = api.events(
  (e: LocalEvent) => {
    if (e.type !== "event") return; // a ping
    if (e.name === "transaction.result" && e.data.tx_id === txId)
      status(`Case number: ${String(e.data.case_number ?? e.data.reason)}`);
    if (e.name === "device.unplugged") status(`${e.device_id} unplugged`);
  },
  { onState: (s) => s === "reconnecting" && status("reconnecting to the outlet agent…") },
);

const guard = (f: () => Promise<void>) => async (): Promise<void> => {
  try {
    await f();
  } catch (err) {
    if (err instanceof GovedgeError) status(`${err.message} — ${err.hint} (${err.code}, ${err.status})`);
    else throw err;
  }
};

document.getElementById("read")!.onclick = guard(async () => {
  card = await api.readIdCard();
  status(`Read the card of ${card.name}, valid to ${card.long_term ? "长期" : card.valid_to ?? "?"}`);
});
document.getElementById("scan")!.onclick = guard(async () => {
  doc = await api.captureDocument();
  status(`Captured ${doc.width}×${doc.height}`);
});
document.getElementById("file")!.onclick = guard(async () => {
  if (card === null || doc === null) return status("read the card and capture a document first");
  const accepted = await api.submit({
    item_code: "330100-000-XK-001", region_code: "330106", window: "3", clerk: "clerk-7",
    applicant: { name: card.name, id_number: card.id_number },
    materials: [{ name: "身份证复印件", document_id: doc.document_id }],
  });
  txId = accepted.tx_id;
  status("Filed; waiting for the case number…");
  const known = await api.transactionStatus(txId);
  if (known.status === "rejected") status(`Refused: ${known.reason ?? ""}`);
});

// The rating of docs/local-api.md ("Evaluations"): one key per rating asked, reused on retry.
export async function rate(caseNumber: string, clerk: string): Promise<string> {
  const r: EvaluationPublic = await api.evaluate(
    { window: "3", case_number: caseNumber, staff_id: clerk, timeout_s: 60 },
    newIdempotencyKey("eval"),
  );
  if (r.status === "rated") return `${r.stars ?? 0}★ ${r.satisfaction ?? ""}`;
  const byDefault = r.default_rating;
  if (byDefault) return `未评价，${byDefault.state === "pending" ? "将记" : "已记"}默认评价（${byDefault.stars}星）`;
  return r.status === "timed_out" ? "评价超时，未评价" : "已取消";
}

// The queue (docs/local-api.md, "Queue"): call the next ticket and show what is announced.
export async function callNext(window: string): Promise<void> {
  const called = await api.windowCall(window);
  if (called.ticket) status(`${called.ticket.number}: ${called.announcement?.text ?? ""}`);
  called.warnings?.forEach((w) => status(w.hint ?? w.message));
  const state = await api.queueState();
  status(`${state.windows.length} windows, ${state.appointments.booked} booked`);
}

export const stop = (): void => stream.close();
