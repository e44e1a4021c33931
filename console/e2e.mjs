// The console in a real browser (Debian's chromium, driven by playwright-core) against a
// running `tollgate demo`: sign in with the one-time link, create a key and use it through the
// proxy, disable it and see the proxy refuse it, see the spend chart move after priced
// traffic, a wrong token's error, an invalid IP's message from the API next to the field, and
// the operator's pages. Any JavaScript error in the page fails the run. Saves a screenshot of
// each page into $SCREENSHOTS. Run by tests/console.rs; by hand:
//
//     cargo build && (cd console && npm ci) && node console/e2e.mjs
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const bin = process.env.TOLLGATE_BIN || new URL("../target/debug/tollgate", import.meta.url).pathname;
const shots = process.env.SCREENSHOTS || "/tmp/tollgate-console";
const browserPath = process.env.CHROMIUM || "/usr/bin/chromium";
mkdirSync(shots, { recursive: true });

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
  console.log(`ok - ${what}`);
}

async function startDemo() {
  const demo = spawn(bin, ["demo", "--json"], { stdio: ["ignore", "pipe", "inherit"] });
  const line = await new Promise((resolve, reject) => {
    createInterface({ input: demo.stdout }).once("line", resolve);
    demo.once("exit", (code) => reject(new Error(`demo exited with ${code}`)));
  });
  return { demo, info: JSON.parse(line) };
}

async function proxied(info, key, path) {
  const resp = await fetch(`${info.proxy}${path}`, { headers: { Authorization: `Bearer ${key}` } });
  const body = await resp.text();
  return { status: resp.status, body };
}

// Polls `probe` until it is truthy, for at most `ms`.
async function eventually(probe, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const { demo, info } = await startDemo();
const browser = await chromium.launch({ executablePath: browserPath, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
const errors = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  // The browser logs every non-2xx fetch; the refusals this test provokes on purpose (401, 422)
  // are expected, anything else (a 404 asset, a 500) is an error.
  page.on("console", (m) => {
    const expected = /Failed to load resource: .* (401|422) /.test(m.text());
    if (m.type() === "error" && !expected) errors.push(`console: ${m.text()}`);
  });
  page.on("dialog", (d) => d.accept());
  const console_ = `${info.api}/console/`;

  // A wrong token: a clear error, still on the sign-in page.
  await page.goto(console_);
  await page.fill('#signin-form input[name="token"]', "rsk_not-a-real-token");
  await page.click('#signin-form button[type="submit"]');
  const signinError = page.getByTestId("signin-error");
  await signinError.waitFor();
  check((await signinError.textContent()).includes("not accepted (401"), "a wrong token says it was not accepted (401)");
  await page.screenshot({ path: `${shots}/signin.png` });

  // The one-time link signs the partner in and dies.
  await page.goto(info.console);
  await page.getByTestId("who").filter({ hasText: "demo" }).waitFor();
  check(!page.url().includes("login="), "the link's code is dropped from the address bar");
  const reuse = await fetch(`${info.api}/api/v1/console/login`, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ code: new URL(info.console).hash.slice("#login=".length) }),
  });
  check(reuse.status === 401, "a used sign-in link does not work twice");
  await page.getByTestId("balance").filter({ hasText: "$10.00" }).waitFor();
  check(true, "the overview shows the demo balance");
  await page.screenshot({ path: `${shots}/partner.png`, fullPage: true });

  // Create a key: the secret is shown once, and it works through the proxy.
  await page.fill('#create-form input[name="label"]', "browser-test");
  await page.fill('#create-form input[name="daily_cost_limit_usd"]', "5");
  await page.click('#create-form button[type="submit"]');
  await page.getByTestId("secret").filter({ hasText: "cr_" }).waitFor();
  const secret = (await page.getByTestId("secret").textContent()).trim();
  check(secret.startsWith("cr_"), "the new key's secret is shown");
  const row = page.locator('tr[data-label="browser-test"]');
  await row.waitFor();
  // The search runs on the server: only the matching key is listed.
  await page.fill("#key-search", "BROWSER-te");
  await page.locator("#keys-body tr").filter({ hasText: "demo key" }).waitFor({ state: "detached" });
  check(await page.locator("#keys-body tr").count() === 1, "searching the keys lists only the match");
  await page.fill("#key-search", "");
  await page.locator("#keys-body tr").filter({ hasText: "demo key" }).waitFor();
  check((await proxied(info, secret, "/hello")).status === 200, "the new key works through the proxy");

  // Priced traffic moves the spend chart (usage is written at each flush).
  const before = await page.getByTestId("chart-today").textContent();
  for (let i = 0; i < 5; i++) check((await proxied(info, secret, "/priced/x")).status === 200, `priced call ${i + 1} passes`);
  await eventually(async () => {
    await page.click("#refresh");
    await page.waitForTimeout(300);
    return (await page.getByTestId("chart-today").textContent()) !== before;
  }, 15000, "the spend chart to move");
  check((await page.getByTestId("chart-today").textContent()) === "$0.05", "today's spend reads $0.05 after five priced calls");
  await page.screenshot({ path: `${shots}/spend.png`, fullPage: true });

  // An invalid IP in the edit form: the API's message next to the field.
  await row.locator('button[data-action="edit"]').click();
  await page.fill('#edit-form textarea[name="ip_whitelist"]', "10.0.0.0/8\nnot-an-ip");
  await page.click('#edit-form button[type="submit"]');
  const ipError = page.getByTestId("ip-error");
  await ipError.filter({ hasText: "not-an-ip" }).waitFor();
  check((await ipError.textContent()).startsWith("ip_whitelist:"), "the invalid IP shows the API's message next to the field");
  await page.screenshot({ path: `${shots}/edit.png`, fullPage: true });
  await page.click("#edit-cancel");

  // Relabelling a key sends only the label: the Gateway3 account's admin-only key keeps
  // `admin`, which the form has no box for.
  const admin = page.locator("#keys-body tr", { hasText: "demo-admin" });
  const adminId = await admin.getAttribute("data-key");
  await admin.locator('button[data-action="edit"]').click();
  await page.fill('#edit-form input[name="label"]', "account admin");
  await page.click('#edit-form button[type="submit"]');
  await page.locator('tr[data-label="account admin"]').waitFor();
  const stored = await (await fetch(`${info.api}/api/v1/reseller/keys/${adminId}`, {
    headers: { Authorization: `Bearer ${info.partner_token}` },
  })).json();
  check(JSON.stringify(stored.data.permissions) === '["admin"]', "editing a label keeps permissions the form does not show");

  // Disable the key: the proxy refuses it at once.
  await row.locator('button[data-action="disable"]').click();
  await row.getByTestId("status").filter({ hasText: "disabled" }).waitFor();
  const refused = await proxied(info, secret, "/hello");
  check(refused.status === 403 && refused.body.includes("key_disabled"), "the disabled key is refused by the proxy");

  // Revoke it for good: no more buttons, and the proxy says revoked.
  await row.locator('button[data-action="revoke"]').click();
  await row.getByTestId("status").filter({ hasText: "revoked" }).waitFor();
  check(await row.locator("button").count() === 0, "a revoked key offers no action");
  check((await proxied(info, secret, "/hello")).body.includes("key_revoked"), "the revoked key is refused as revoked");

  // Thirty days of spend, and the Gateway3 account with its usage bars.
  await page.click('button[data-range="30d"]');
  await page.locator('button[data-range="30d"][aria-pressed="true"]').waitFor();
  check(await page.locator("#chart canvas").count() > 0, "the 30-day chart is drawn");
  check(await page.locator("#accounts-body tr", { hasText: "demo-user" }).count() === 1, "the Gateway3 account is listed");

  // Rotate the partner token: the old one dies, the tab carries on with the new one.
  await page.click("#rotate");
  await page.locator("#rotated").filter({ hasText: "rsk_" }).waitFor();
  const rotated = (await page.locator("#rotated").textContent()).trim();
  const old = await fetch(`${info.api}/api/v1/reseller/me`, { headers: { Authorization: `Bearer ${info.partner_token}` } });
  const fresh = await fetch(`${info.api}/api/v1/reseller/me`, { headers: { Authorization: `Bearer ${rotated}` } });
  check(old.status === 401 && fresh.status === 200, "rotation ends the old token and the new one works");
  await page.click("#refresh");
  await page.getByTestId("balance").filter({ hasText: "$" }).waitFor();
  check(!(await page.locator("#banner").isVisible()), "the tab keeps working with the new token");

  // The operator: partners, and live traffic drawn from /metrics.
  await page.click("#sign-out");
  await page.fill('#signin-form input[name="token"]', info.operator_token);
  await page.selectOption('#signin-form select[name="role"]', "operator");
  await page.click('#signin-form button[type="submit"]');
  await page.getByTestId("partners").locator("tr", { hasText: "demo" }).waitFor();
  check(true, "the operator sees the demo partner");
  const demoRow = page.getByTestId("partners").locator("tr", { hasText: "demo" });
  await demoRow.locator("input").first().fill("5");
  await demoRow.locator("button", { hasText: "Top up" }).click();
  await page.getByTestId("partners").locator("tr", { hasText: "$14.95" }).waitFor();
  check(true, "a top-up shows in the partner's balance");
  await demoRow.locator("button", { hasText: "Suspend" }).click();
  await page.getByTestId("partners").locator("tr", { hasText: "suspended" }).waitFor();
  await page.getByTestId("partners").locator("button", { hasText: "Resume" }).click();
  await page.getByTestId("partners").locator("button", { hasText: "Suspend" }).waitFor();
  check(true, "suspend and resume toggle the partner's status");
  await proxied(info, "cr_wrong", "/hello");
  await eventually(async () => (await page.getByTestId("live-rate").textContent()) !== "…", 10000, "the live rate");
  await page.getByTestId("denials").locator("tr", { hasText: "invalid_key" }).waitFor();
  check(true, "live denials by code include invalid_key");
  await page.screenshot({ path: `${shots}/operator.png`, fullPage: true });

  const jsErrors = await page.getByTestId("js-errors").isVisible();
  check(!jsErrors && errors.length === 0, `no JavaScript error in the page (${errors.join("; ")})`);

  // The gateway goes away: the page says so and keeps retrying, instead of going blank.
  demo.kill();
  await page.locator("#banner").filter({ hasText: "cannot read /metrics" }).waitFor({ timeout: 10000 });
  check(await page.getByTestId("partners").isVisible(), "a network failure shows a banner and keeps the page");
  console.log("console e2e: all checks passed");
} finally {
  await browser.close();
  demo.kill();
}
