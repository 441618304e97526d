// The Puppeteer reference probe: what a team writes instead of deskew's browser mode, done well.
// CONCURRENCY workers each load URL in a fresh incognito context with the cache disabled,
// wait for `networkidle0` (no request for 500 ms, as deskew's default --idle 500), count a load
// failed on any response >= 400, failed request, page error or console error, close the context,
// and start again until DURATION seconds have passed. Prints one JSON line to stdout and exits 0
// when no load failed, 1 when some did; anything that stops it (Chromium would not start, a lost
// CDP connection) goes to stderr with exit 2, so a crash is never read as a verdict.
//
//   node bench/puppeteer/probe.mjs URL CONCURRENCY DURATION_S [CHROMIUM]
import puppeteer from "puppeteer-core";

const [url, concurrency = "1", duration = "10", executablePath = "/usr/bin/chromium"] = process.argv.slice(2);
process.on("uncaughtException", (e) => { console.error(e); process.exit(2); });
process.on("unhandledRejection", (e) => { console.error(e); process.exit(2); });
const browser = await puppeteer.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic"],
});
const until = Date.now() + Number(duration) * 1000;
let loads = 0, failed = 0, requests = 0;

async function loadOnce() {
  const context = await browser.createBrowserContext();
  const errors = [];
  try {
    const page = await context.newPage();
    await page.setCacheEnabled(false);
    page.on("request", (r) => { if (!r.url().startsWith("data:")) requests++; });
    page.on("response", (r) => { if (r.status() >= 400) errors.push(`${r.status()} ${r.url()}`); });
    page.on("requestfailed", (r) => errors.push(`failed ${r.url()}`));
    page.on("pageerror", (e) => errors.push(`exception ${e.message}`));
    page.on("console", (m) => { if (m.type() === "error") errors.push(`console ${m.text()}`); });
    await page.goto(url, { waitUntil: "networkidle0", timeout: 30000 });
  } catch (e) {
    errors.push(String(e));
  } finally {
    await context.close().catch((e) => errors.push(`close ${e}`));
  }
  loads++;
  if (errors.length) failed++;
}

const t0 = Date.now();
await Promise.all(Array.from({ length: Number(concurrency) }, async () => {
  while (Date.now() < until) await loadOnce();
}));
const elapsed = (Date.now() - t0) / 1000;
await browser.close();
console.log(JSON.stringify({ loads, failed, requests, elapsed_s: elapsed, loads_per_s: loads / elapsed }));
process.exitCode = failed ? 1 : 0;
