// Drives the respond page in headless Chromium as a person on a phone would: answers one
// question of every kind, leaves, comes back to find the answers in place, finishes.
// Usage: node respond.cjs <magic link> <screenshot.png>
const { chromium } = require("playwright-core");

async function expectChecked(page, selector) {
  if (!(await page.locator(selector).isChecked())) {
    throw new Error(`${selector} is not checked after coming back`);
  }
}

(async () => {
  const [link, screenshot] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.BECKON_TEST_CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    let page = await context.newPage();
    const saved = () => page.waitForResponse((r) => r.url().includes("/answers/") && r.ok());
    const displayed = page.waitForResponse((r) => r.url().endsWith("/display"));
    await page.goto(link);
    if ((await displayed).status() !== 204) { throw new Error("display was not recorded"); }

    // NPS by tapping, rating by keyboard, a single choice by its label.
    let done = saved();
    await page.locator('fieldset[data-question="nps"] label', { hasText: /^9$/ }).tap();
    await done;
    done = saved();
    await page.locator('fieldset[data-question="rating"] input[value="3"]').focus();
    await page.keyboard.press("ArrowRight");
    await done;
    done = saved();
    await page.getByLabel("Price").check();
    await done;

    // Leave, and come back with the same link.
    await page.close();
    page = await context.newPage();
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
    console.log("finished");
  } finally {
    await browser.close();
  }
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
