// Calls the declarations must refuse: each line below the marker is a mistake an app
// could make. tsc fails on an unused `@ts-expect-error`, so a declaration loosened to
// accept one of them (`any`, a missing required field) fails
// tests/local_api/test_js_client_types.py.
import { GovedgeLocal } from "./govedge-local.js";

const api = new GovedgeLocal({ token: "gva_example" });

export async function mistakes(): Promise<void> {
  // @ts-expect-error a submission needs the applicant, window and clerk
  await api.submit({ item_code: "330100-000-XK-001", region_code: "330106" });
  // @ts-expect-error a window is a string ("3"), not a number
  await api.windowCall(3);
  // @ts-expect-error assess_number is 1 or 2
  await api.evaluate({ window: "3", case_number: "c", staff_id: "s", assess_number: 3 });
  const accepted = await api.submit({
    item_code: "x", region_code: "330106", window: "3", clerk: "c", applicant: { name: "n", id_number: "i" },
  });
  // @ts-expect-error the answer has tx_id, not txId
  console.log(accepted.txId);
  // @ts-expect-error the client needs its token
  new GovedgeLocal({ baseUrl: "http://127.0.0.1:8765" });
  api.events((e) => {
    // @ts-expect-error a ping has no name: check e.type first
    console.log(e.name);
  });
}
