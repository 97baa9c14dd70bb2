// The gateway's demo page used as a person would, in Debian's Chromium (playwright-core from
// session-sync/tests/e2e's npm packages). Driven by tests/demo_page.rs against a platform it
// started with the default rate limits.
// Usage: node run.mjs <base-url> <playwright-dir>
// Prints one line `result: <json>` and exits 0, or prints the failure and exits 1.
import { createRequire } from "node:module";
import path from "node:path";

const [base, playwrightDir] = process.argv.slice(2);
const { chromium } = createRequire(path.join(playwrightDir, "package.json"))("playwright-core");

// A bound on every wait, not a measurement: generous, as a loaded CI machine can take seconds to
// render a page. Latencies are measured and printed, not asserted.
const TIMEOUT = 30_000;
const email = `demo-${Date.now()}-${Math.floor(Math.random() * 1e9)}@example.com`;
const password = "a sound password 42";
const problems = [];

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

function check(cond, message) {
  if (!cond) throw new Error(message);
}

/** A tab of `device` on the demo page. */
async function tab(device, name) {
  const page = await device.newPage();
  page.on("pageerror", (e) => problems.push(`${name}: page error: ${e.message}`));
  // The page must run under its Content-Security-Policy without a violation.
  page.on("console", (m) => {
    if (m.type() === "error" && /Content Security Policy|Refused to/.test(m.text())) problems.push(`${name}: ${m.text()}`);
  });
  page.on("response", (r) => {
    if (r.status() >= 400 && r.status() !== 401) problems.push(`${name}: ${r.status()} ${r.url()}`);
  });
  await page.goto(base);
  return page;
}

const signedIn = (page) => page.waitForSelector("#app:not(.hidden)", { timeout: TIMEOUT });
const signedOutShown = (page) => page.waitForSelector("#signin:not(.hidden)", { timeout: TIMEOUT });
const logText = (page) => page.textContent("#log");
const live = (page) => page.waitForFunction(() => document.querySelector("#live")?.textContent === "open",
  null, { timeout: TIMEOUT });

/** Records, in the page, when its sign-in form shows again (the page's own clock). */
function watchSignOut(page) {
  return page.evaluate(() => {
    window.signedOutAt = null;
    new MutationObserver(() => {
      if (!window.signedOutAt && !document.querySelector("#signin").classList.contains("hidden")) {
        window.signedOutAt = Date.now();
      }
    }).observe(document.querySelector("#signin"), { attributes: true });
  });
}

async function signIn(page) {
  await page.fill("#email", email);
  await page.fill("#password", password);
  await page.click("#login");
  await signedIn(page);
}

/** The status of the payment described `text` in `page`'s list, once it is there. */
async function paymentRow(page, text, status) {
  const row = page.locator("#payments tr", { hasText: text });
  await row.filter({ hasText: status }).first().waitFor({ timeout: TIMEOUT });
  return row.first();
}

const result = {};
try {
  // Device 1, tab 1: register and sign in.
  const device1 = await browser.newContext();
  const a1 = await tab(device1, "device 1 tab 1");
  await a1.fill("#email", email);
  await a1.fill("#password", password);
  await a1.click("#register");
  await a1.waitForFunction(() => document.querySelector("#log").textContent.includes("registered"),
    null, { timeout: TIMEOUT });
  await signIn(a1);
  check((await a1.textContent("#who")) === email, "tab 1 does not show who signed in");
  await live(a1);

  // Tab 2 of the same browser is signed in from the shared session.
  const a2 = await tab(device1, "device 1 tab 2");
  await signedIn(a2);
  await live(a2);

  // A payment created in tab 1 appears live in tab 2; completed in tab 2, live in tab 1.
  const what = `coffee ${Date.now()}`;
  await a1.fill("#description", what);
  await a1.click("#pay");
  const row2 = await paymentRow(a2, what, "pending");
  await row2.locator("button", { hasText: "completed" }).click();
  await paymentRow(a1, what, "completed");
  await paymentRow(a2, what, "completed");
  result.payment_live = true;

  // Device 2 signs in; "log out other devices" signs out both tabs of device 1 (how long it took
  // is measured on the pages' clocks, from the click to each tab's sign-in form, and printed).
  const device2 = await browser.newContext();
  const b1 = await tab(device2, "device 2 tab 1");
  await signIn(b1);
  await live(b1);
  await b1.waitForFunction(() => document.querySelectorAll("#devices tr").length === 2, null, { timeout: TIMEOUT });
  const oldToken = await a1.evaluate(() => JSON.parse(localStorage.getItem("demo-session")).access_token);
  await watchSignOut(a1);
  await watchSignOut(a2);
  const clicked = await b1.evaluate(() => { const at = Date.now(); document.querySelector("#others").click(); return at; });
  const outAfter = [];
  for (const page of [a1, a2]) {
    await page.waitForFunction(() => window.signedOutAt !== null, null, { timeout: TIMEOUT });
    outAfter.push((await page.evaluate(() => window.signedOutAt)) - clicked);
  }
  result.revoke_others_ms = outAfter;
  check((await logText(a1)).includes("this device was signed out from another one")
    || (await logText(a2)).includes("this device was signed out from another one"),
    "device 1 was not told why it was signed out");
  await b1.waitForFunction(() => document.querySelector("#log").textContent.includes("signed out 1 other device"),
    null, { timeout: TIMEOUT });
  // Device 1's token is refused from now on.
  const refused = await a1.evaluate(async (t) => (await fetch("/api/payments", { headers: { authorization: `Bearer ${t}` } })).status, oldToken);
  check(refused === 401, `the revoked device's token got ${refused}`);

  // Device 2, tab 2; signing out in tab 1 signs out tab 2.
  const b2 = await tab(device2, "device 2 tab 2");
  await signedIn(b2);
  await watchSignOut(b2);
  await b1.click("#logout");
  await signedOutShown(b1);
  await b2.waitForFunction(() => window.signedOutAt !== null, null, { timeout: TIMEOUT });
  check((await logText(b2)).includes("signed out in another tab"), "tab 2 was not told why");
  check((await b2.evaluate(() => localStorage.getItem("demo-session"))) === null, "tab 2 kept the session");
  result.logout_across_tabs = true;

  // Wrong passwords until the credential limit: the page shows the gateway's message and when
  // to try again.
  const device3 = await browser.newContext();
  const c1 = await device3.newPage();
  await c1.goto(base);
  await c1.fill("#email", email);
  await c1.fill("#password", "not the password 1");
  let status = 0;
  for (let i = 0; i < 20 && status !== 429; i++) {
    const response = c1.waitForResponse((r) => r.url().endsWith("/api/auth/login"));
    await c1.click("#login");
    status = (await response).status();
  }
  check(status === 429, "twenty wrong passwords in a row were never limited");
  await c1.waitForFunction(() => /too many requests.*try again in \d+ s/.test(document.querySelector("#log").textContent),
    null, { timeout: TIMEOUT });
  result.limit_message = (await logText(c1)).split("\n")[0];

  check(problems.length === 0, `unexpected: ${problems.join("; ")}`);
  console.log(`result: ${JSON.stringify(result)}`);
  await browser.close();
} catch (e) {
  console.error(e.stack ?? String(e));
  if (problems.length) console.error(`also: ${problems.join("; ")}`);
  await browser.close();
  process.exit(1);
}
