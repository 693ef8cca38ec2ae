// Drives the respond page in headless Chromium as a person on a phone would: answers one
// question of every kind, leaves, comes back to find the answers in place, finishes. With a
// second link, answers one question there and closes that survey unsubmitted.
// Usage: node respond.cjs <magic link> <screenshot.png> [<magic link to close>]
const { chromium } = require("playwright-core");

async function expectChecked(page, selector) {
  if (!(await page.locator(selector).isChecked())) {
    throw new Error(`${selector} is not checked after coming back`);
  }
}

(async () => {
  const [link, screenshot, toClose] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.BECKON_TEST_CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, locale: "fr-FR" });
    // Anything the page's Content-Security-Policy refuses is reported, both as the DOM event
    // (recorded by a script the browser injects, which the policy does not govern) and on the
    // console; either fails the run.
    await context.addInitScript(() => {
      window.__violations = [];
      document.addEventListener("securitypolicyviolation", (e) => {
        window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`);
      });
    });
    const consoleViolations = [];
    const puts = {};
    const watch = (p) => {
      p.on("console", (m) => { if (/Content Security Policy/i.test(m.text())) { consoleViolations.push(m.text()); } });
      p.on("request", (r) => {
        const m = r.method() === "PUT" && r.url().match(/\/answers\/([^/?]+)$/);
        if (m) { puts[m[1]] = (puts[m[1]] || 0) + 1; }
      });
    };
    const checkPolicy = async (p) => {
      const violations = (await p.evaluate(() => window.__violations)).concat(consoleViolations);
      if (violations.length) { throw new Error(`CSP violations: ${violations.join("; ")}`); }
    };
    let page = await context.newPage();
    watch(page);
    const saved = () => page.waitForResponse((r) => r.url().includes("/answers/") && r.ok());
    const displayed = page.waitForResponse((r) => r.url().endsWith("/display"));
    const opened = await page.goto(link);
    const policy = opened.headers()["content-security-policy"] || "";
    if (!policy.includes("frame-ancestors 'none'") || policy.includes("unsafe-inline")) {
      throw new Error(`the page's policy is not the strict one: ${policy}`);
    }
    await checkPolicy(page);
    if ((await displayed).status() !== 204) { throw new Error("display was not recorded"); }

    // NPS by tapping, rating by keyboard, a single choice by its label.
    let done = saved();
    await page.locator('fieldset[data-question="nps"] label', { hasText: /^9$/ }).tap();
    await done;
    // Stepping through the scale with the arrow keys changes the choice at every step; only
    // where it settles is saved.
    done = saved();
    await page.locator('fieldset[data-question="rating"] input[value="1"]').focus();
    for (let i = 0; i < 3; i++) { await page.keyboard.press("ArrowRight"); }
    await done;
    if (puts.rating !== 1) { throw new Error(`stepping the rating saved it ${puts.rating} times`); }
    done = saved();
    await page.getByLabel("Price").check();
    await done;

    // Leave, and come back with the same link.
    await checkPolicy(page);
    await page.close();
    page = await context.newPage();
    watch(page);
    await page.goto(link);
    await expectChecked(page, 'fieldset[data-question="nps"] input[value="9"]');
    await expectChecked(page, 'fieldset[data-question="rating"] input[value="4"]');
    await expectChecked(page, 'fieldset[data-question="reason"] input[value="Price"]');

    done = saved();
    await page.getByLabel("API").check();
    await page.getByLabel("Widget").check();
    await done;
    done = saved();
    await page.locator('fieldset[data-question="more"] textarea').fill("Great support");
    await done;
    if (screenshot) { await page.screenshot({ path: screenshot, fullPage: true }); }

    await page.getByRole("button", { name: "Submit" }).click();
    await page.getByText("Thank you!").waitFor({ timeout: 10000 });
    await checkPolicy(page);
    console.log("finished");

    if (toClose) {
      page = await context.newPage();
      watch(page);
      const shown = page.waitForResponse((r) => r.url().endsWith("/display"));
      await page.goto(toClose);
      await shown;
      // Closing saves the answer still settling first.
      await page.locator('fieldset[data-question="nps"] label', { hasText: /^3$/ }).tap();
      await page.getByRole("button", { name: "Close survey" }).click();
      await page.getByText("Survey closed").waitFor({ timeout: 10000 });
      await checkPolicy(page);
      await page.goto(toClose);
      await page.getByText("This survey was closed").waitFor({ timeout: 10000 });
      console.log("closed");
    }
  } finally {
    await browser.close();
  }
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
