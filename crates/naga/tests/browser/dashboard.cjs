// The dashboard in a real browser (Debian's Chromium, driven by
// playwright-core): run by tests/dashboard.rs as
//   node dashboard.cjs <agent-url> <scenario> [receiver-url | token] [screenshot-dir]
// and exits non-zero, saying what did not happen, when a step fails.
"use strict";
const { chromium } = require("playwright-core");

const [base, scenario, extra, shots] = process.argv.slice(2);
const WAIT = { timeout: 20000 };

async function schedule(body, token) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const resp = await fetch(`${base}/schedule`, { method: "POST", headers, body: JSON.stringify(body) });
  if (!resp.ok) throw new Error(`schedule: ${resp.status} ${await resp.text()}`);
}

function batch(id, session, instruction, delayMs, callback) {
  return {
    query: "批量Agent任务执行 (1 个)",
    agent_calls: [{ tool_name: "echo", service_name: "agent_server", instruction,
                    agentType: "agent", parameters: { delay_ms: delayMs } }],
    session_id: session, request_id: id, callback_url: callback ?? null,
  };
}

async function step(what, action) {
  try {
    return await action();
  } catch (e) {
    throw new Error(`${what}: ${e.message.split("\n")[0]}`);
  }
}

async function openTask(page, session, id) {
  await step(`session ${session} listed`, () => page.click(`li[data-session="${session}"]`, WAIT));
  await step(`task ${id} listed`, () => page.click(`li[data-task="${id}"]`, WAIT));
}

const statusIs = (page, sel, s) =>
  step(`${sel} shows ${s}`, () => page.waitForSelector(`${sel} [data-status="${s}"]`, WAIT));

async function live(page) {
  await page.goto(`${base}/ui`);
  await step("the live feed connects", () => page.waitForSelector("#live:not(.off)", WAIT));
  await step("without the API server here, the chat panel says so", () =>
    page.waitForSelector("#chat-note:has-text('API server')", WAIT));
  await step("this node is listed, alive", () =>
    page.waitForSelector("#nodes li:has-text('this node') .dot.alive", WAIT));
  await step("the store's size is shown", () =>
    page.waitForSelector("#store-size:has-text('MB')", WAIT));
  await page.evaluate(() => { window.notReloaded = true; });

  // A task moves to succeeded on the page by itself (a loaded machine's
  // page may open it only once it ended: the running batch below, which
  // the page sees cancelled, shows the live change in every case).
  await schedule(batch("b-1", "浏览器会话", "打开记事本", 5000));
  await openTask(page, "浏览器会话", "b-1");
  await step("b-1 shown running or already succeeded", () =>
    page.waitForSelector('#task-status [data-status="running"], #task-status [data-status="succeeded"]', WAIT));
  await statusIs(page, "#task-status", "succeeded");
  await step("the step's Chinese output shown", () =>
    page.waitForSelector("#task pre:has-text('打开记事本')", WAIT));

  // Cancel stops a running task.
  await schedule(batch("b-2", "浏览器会话", "等很久", 60000));
  await openTask(page, "浏览器会话", "b-2");
  await statusIs(page, "#task-status", "running");
  await page.click("#cancel");
  await statusIs(page, "#task-status", "cancelled");

  // A dead callback is replayed to a receiver that is back.
  await schedule(batch("b-3", "浏览器会话", "回调", 0, extra));
  await openTask(page, "浏览器会话", "b-3");
  await statusIs(page, "#callback-status", "dead");
  await page.click("#replay");
  await statusIs(page, "#callback-status", "delivered");

  if (!(await page.evaluate(() => window.notReloaded))) throw new Error("the page reloaded");
  if (shots) {
    await page.screenshot({ path: `${shots}/dashboard-1280x800.png` });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: `${shots}/dashboard-phone.png`, fullPage: true });
  }
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 0) throw new Error(`at a phone's width the page is ${overflow}px too wide`);
}

// Old work stays in view: the lists are paged ("more"), and a task's
// callback is found by its task however many callbacks are newer.
async function paged(page) {
  await page.goto(`${base}/ui`);
  await step("the sessions list offers more", () => page.waitForSelector("#more-sessions", WAIT));
  const shown = await page.$$eval("#sessions li[data-session]", (l) => l.length);
  if (shown !== 100) throw new Error(`${shown} sessions on the first page, not 100`);
  await page.click("#more-sessions");
  await openTask(page, "old-session", "old-1");
  await statusIs(page, "#callback-status", "dead");
  await step("a dead callback offers Replay", () => page.waitForSelector("#replay", WAIT));
}

async function chat(page) {
  await page.goto(`${base}/ui`);
  await step("the chat panel is ready", () => page.waitForSelector("#chat-title:has-text('dashboard-')", WAIT));
  await page.fill("#chat-input", "请打开记事本");
  await page.click("#chat-form button");
  await step("the assistant answers in the panel", () =>
    page.waitForSelector(".msg.assistant:has-text('我收到了：请打开记事本')", WAIT));
  const session = (await page.textContent("#chat-title")).split("· ")[1];
  await step(`the analyzer's task shows in the chat's session ${session}`, () =>
    page.click(`li[data-session="${session}"]`, WAIT));
  await step("its task succeeds, live", () => page.waitForSelector('#tasks [data-status="succeeded"]', WAIT));
  await step("the conversation is read back for the session", () =>
    page.waitForSelector(".msg.user:has-text('请打开记事本')", WAIT));
  if (shots) await page.screenshot({ path: `${shots}/dashboard-chat.png` });
}

async function token(page) {
  await page.goto(`${base}/ui`);
  await step("the page asks for the token", () => page.waitForSelector("#login:not([hidden])", WAIT));
  await page.fill("#token", "wrong-token-of-enough-length");
  await page.click("#login button");
  await step("a wrong token is refused", () =>
    page.waitForSelector("#login-error:has-text('refused')", WAIT));
  await schedule(batch("t-1", "token-session", "hello", 0), extra);
  await page.fill("#token", extra);
  await page.click("#login button");
  await step("with the token the sessions show", () =>
    page.waitForSelector('li[data-session="token-session"]', WAIT));
  // Kept for the tab: a reload opens directly.
  await page.reload();
  await step("the token is kept for the tab", () =>
    page.waitForSelector('li[data-session="token-session"]', WAIT));
}

(async () => {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  let failed = null;
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on("pageerror", (e) => { failed ??= new Error(`script error on the page: ${e.message}`); });
    await ({ live, token, chat, paged })[scenario](page);
  } catch (e) {
    failed ??= e;
  } finally {
    await browser.close();
  }
  if (failed) {
    console.error(failed.message);
    process.exit(1);
  }
  console.log(`${scenario}: ok`);
})();
