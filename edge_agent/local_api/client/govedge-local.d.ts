// Types for govedge-local.js (the outlet agent's local API). Interface names and fields
// mirror the agent's OpenAPI schemas field by field (names, optional or required, types);
// tests/local_api/test_js_client.py checks them (client_drift.py) and each call's
// parameters, body type and result type against the operations. Keep to the TypeScript
// the check reads: one `name?: type;` per field, `|`, `T[]`, `Record<string, T>`.

export type RouteRow = readonly [name: string, method: "GET" | "POST", path: string];
export declare const ROUTES: readonly RouteRow[];

export declare class GovedgeError extends Error {
  readonly status: number; // HTTP status; 0 for a network failure
  readonly code: string; // the agent's "error" code, e.g. "device_busy"
  readonly hint: string; // what the clerk should do
  constructor(status: number, code: string, message: string, hint: string);
}

export declare function newIdempotencyKey(prefix?: string): string;

export interface WarningPublic { code: string; message: string; hint?: string }
export interface DevicePublic { device_id: string; kind: string; model: string; state: string; health: Record<string, number | boolean | string> }
export interface DeviceList { devices: DevicePublic[] }
export interface CardReadCreate { device_id?: string | null; fingerprint?: boolean | null; extra_address?: boolean | null }
export interface IdCardPublic {
  device_id: string; card_type: string; name: string; sex: string; sex_label: string;
  nation: string | null; nation_label: string | null; birth_date: string; address: string | null;
  id_number: string; authority: string | null; valid_from: string; valid_to: string | null;
  long_term: boolean; english_name: string | null; nationality: string | null;
  pass_number: string | null; issue_count: string | null; extra_addresses: string[];
  extra_address: string | null; photo_wlt_base64: string; fingerprint_base64: string | null;
}
export interface SocialSecurityReadCreate { device_id?: string | null; wait_s?: number | null }
export interface SocialSecurityCardPublic { device_id: string; card_number: string; region: string; card_id_code: string; name: string; id_number: string }
export interface DocumentCaptureCreate { device_id?: string | null }
export interface DocumentPublic { document_id: string; device_id: string; width: number; height: number; size: number; jpeg_base64: string }
export interface EvaluationCreate {
  window: string; case_number: string; staff_id: string; item_code?: string; item_name?: string;
  assess_number?: 1 | 2; timeout_s?: number | null; device_id?: string | null;
}
/** The region's default rating a walk-away gets: `pending` until `due_at`, or `recorded`. */
export interface DefaultRatingPublic { state: "pending" | "recorded"; tx_id: string; stars: number; due_at: string }
export interface EvaluationPublic {
  status: "rated" | "timed_out" | "cancelled"; tx_id: string | null; window: string; device_id: string;
  stars?: number | null; level_code?: number | null; level_coding?: string | null; satisfaction?: string | null;
  score?: number | null; is_bad?: boolean | null; tags?: string[]; text?: string | null;
  assess_time?: string | null; waited_s?: number; default_rating?: DefaultRatingPublic | null; replayed?: boolean;
}
export interface TicketCreate { business_type: string; print?: boolean }
export interface TicketPublic {
  number: string; business_type: string; business_name: string; waiting: number; issued_at: string;
  printed: boolean; tx_id: string | null; priority?: number; appointment?: string | null;
  evaluation_url?: string | null; warnings?: WarningPublic[];
}
export interface AppointmentCreate { reference: string; day: string; business_type: string; priority?: number; slot?: string }
export interface AppointmentsCreate { appointments: AppointmentCreate[] }
export interface AppointmentsLoaded { received: number; added: number }
export interface CheckInCreate { reference: string; print?: boolean }
export interface TicketInfo { number: string; business_type: string; status: string; window?: string | null; issued_at?: string; calls?: number }
export interface BusinessTypePublic { code: string; prefix: string; name: string; waiting: number }
export interface WindowPublic { window: string; business_types: string[]; paused: boolean; current_ticket: string | null; waiting: number }
export interface AppointmentCountsPublic { booked: number; checked_in: number; expired: number }
export interface EvaluationQrPublic { window: string; pad: string | null; case_number: string | null; url: string | null; svg: string | null }
export interface QueueStatePublic { day: string; business_types: BusinessTypePublic[]; windows: WindowPublic[]; appointments: AppointmentCountsPublic }
export interface AnnouncementPublic { text: string; audio_url: string | null }
export interface LedPublic { lines: string[]; shown: boolean }
export interface WindowResultPublic {
  operation: string; window: string; ticket: TicketInfo | null; waiting: number;
  announcement: AnnouncementPublic | null; led: LedPublic | null; tx_id: string | null; warnings?: WarningPublic[];
}
export interface TransferCreate { to_business_type?: string | null; to_window?: string | null }
export interface CallBackCreate { ticket: string }
export interface ApplicantCreate { name: string; id_type?: string; id_number: string; kind?: 1 | 2; phone?: string | null }
export interface MaterialCreate {
  name: string; document_id?: string | null; data_base64?: string | null; content_type?: string;
  pages?: number | null; original?: boolean;
}
export interface SubmissionCreate {
  item_code: string; region_code: string; applicant: ApplicantCreate; agent?: ApplicantCreate | null;
  materials?: MaterialCreate[]; window: string; clerk: string; case_number?: string | null;
  apply_source?: string | null; handling_mode?: "direct" | "agency" | null; outlet_kind?: string | null; note?: string | null;
}
export interface SubmissionAccepted { tx_id: string; status?: "accepted"; materials?: number }
export interface TransactionPublic {
  tx_id: string; status: "waiting" | "acked" | "delivered" | "rejected" | "unknown";
  tx_kind?: string | null; case_number?: string | null; reason?: string | null; attempts?: number | null;
}

/** An event of WS /v1/events (docs/local-api.md names them); `data` never holds personal data. */
export interface LocalDeviceEvent {
  type: "event"; name: string; device_id: string; severity: string; data: Record<string, unknown>;
  ts: number; dropped?: number;
}
/** Sent after a silence, so a dead connection is noticed. */
export interface LocalPing { type: "ping" }
/** One message of WS /v1/events: check `type` before reading an event's fields. */
export type LocalEvent = LocalDeviceEvent | LocalPing;
export interface EventStream { close(): void }

export interface GovedgeLocalOptions { baseUrl?: string; token: string; retries?: number }

export declare class GovedgeLocal {
  constructor(options: GovedgeLocalOptions);
  readonly baseUrl: string;
  request<T = unknown>(method: string, path: string, options?: { body?: unknown; query?: Record<string, string | number | undefined>; idempotencyKey?: string }): Promise<T>;
  listDevices(): Promise<DeviceList>;
  getDevice(deviceId: string): Promise<DevicePublic>;
  readIdCard(body?: CardReadCreate): Promise<IdCardPublic>;
  readSocialSecurityCard(body?: SocialSecurityReadCreate): Promise<SocialSecurityCardPublic>;
  captureDocument(body?: DocumentCaptureCreate, format?: "jpeg"): Promise<DocumentPublic>;
  evaluate(body: EvaluationCreate, idempotencyKey?: string): Promise<EvaluationPublic>;
  takeTicket(body: TicketCreate): Promise<TicketPublic>;
  queueState(): Promise<QueueStatePublic>;
  loadAppointments(body: AppointmentsCreate): Promise<AppointmentsLoaded>;
  checkInAppointment(body: CheckInCreate): Promise<TicketPublic>;
  announcementUrl(announcementId: string): string;
  windowCall(window: string): Promise<WindowResultPublic>;
  windowRecall(window: string): Promise<WindowResultPublic>;
  windowSkip(window: string): Promise<WindowResultPublic>;
  windowHold(window: string): Promise<WindowResultPublic>;
  windowFinish(window: string): Promise<WindowResultPublic>;
  windowPause(window: string): Promise<WindowResultPublic>;
  windowResume(window: string): Promise<WindowResultPublic>;
  windowTransfer(window: string, body: TransferCreate): Promise<WindowResultPublic>;
  windowCallBack(window: string, body: CallBackCreate): Promise<WindowResultPublic>;
  evaluationQr(window: string, caseNumber?: string): Promise<EvaluationQrPublic>;
  submit(body: SubmissionCreate, idempotencyKey?: string): Promise<SubmissionAccepted>;
  transactionStatus(txId: string): Promise<TransactionPublic>;
  events(onEvent: (event: LocalEvent) => void, options?: { onState?: (state: "open" | "reconnecting" | "closed") => void; maxDelayMs?: number }): EventStream;
}
