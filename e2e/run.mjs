// The browser test: the unmodified @coji/durably-react hooks in a real
// Chromium, through Vite's dev server, against the Go tenants server.
//
//   TENANTS_BIN=/path/to/tenants node run.mjs
//
// Exits 0 when the page shows the "steps" run completed with its output,
// live progress and logs (useJob: H-070 trigger, H-073 run stream), the run
// list shows it completed (useRuns: H-075, H-076 realtime), and a retrigger
// through useRunActions (H-077) makes a second run that completes too;
// saves test-results/steps-completed.png either way.
import { spawn } from 'node:child_process'
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'
import { freePort, waitHealthy } from './lib.mjs'
import { createServer } from 'vite'

const here = dirname(fileURLToPath(import.meta.url))
const results = join(here, 'test-results')
mkdirSync(results, { recursive: true })

const bin = process.env.TENANTS_BIN
if (!bin) throw new Error('TENANTS_BIN is not set')
const work = mkdtempSync(join(tmpdir(), 'durably-e2e-'))
const port = await freePort()
const tenants = spawn(bin, ['-addr', `127.0.0.1:${port}`, '-db', join(work, 'tenants.db'), '-shutdown-timeout', '500ms'], { stdio: 'inherit' })
let browser, vite
let failed = false
try {
  await waitHealthy(`http://127.0.0.1:${port}/healthz`, 30_000)
  process.env.TENANTS_URL = `http://127.0.0.1:${port}`
  vite = await createServer({ root: here, logLevel: 'warn', server: { host: '127.0.0.1', port: await freePort(), strictPort: true } })
  await vite.listen()
  const url = vite.resolvedUrls.local[0]

  browser = await chromium.launchPersistentContext(join(work, 'profile'), {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
  const page = browser.pages()[0] ?? (await browser.newPage())
  page.on('console', (m) => { if (m.type() === 'error') console.error('[page]', m.text()) })
  await page.goto(url)
  await page.getByTestId('runs').waitFor({ timeout: 30_000 })
  await page.getByTestId('count').fill('5')
  await page.getByTestId('run').click()
  // Live progress over SSE, then the terminal status.
  await page.getByTestId('progress').waitFor({ timeout: 30_000 })
  await page.waitForFunction(() => document.querySelector('[data-testid=status]')?.textContent === 'completed', null, { timeout: 30_000 })
  const output = await page.getByTestId('output').textContent()
  const progress = await page.getByTestId('progress').textContent()
  const logs = await page.getByTestId('logs').textContent()
  await page.waitForSelector('[data-testid=runs] tr[data-status=completed]', { timeout: 30_000 })
  await page.screenshot({ path: join(results, 'steps-completed.png'), fullPage: true })
  // useRunActions (H-077): retrigger the finished run, read the new one back;
  // the realtime list (H-076) shows both runs completed.
  const firstId = await page.locator('[data-testid=runs] tr[data-status=completed] td').first().textContent()
  await page.getByTestId('retrigger').first().click()
  await page.getByTestId('retriggered').waitFor({ timeout: 30_000 })
  const retriggered = await page.getByTestId('retriggered').textContent()
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=runs] tr[data-status=completed]').length === 2, null, { timeout: 30_000 })
  const problems = []
  if (!/^[0-9A-Z]{26} (pending|leased|completed)$/.test(retriggered) || retriggered.slice(18, 26) === firstId) {
    problems.push(`retriggered ${retriggered} (first run …${firstId})`)
  }
  if (output !== '{"sum":15}') problems.push(`output ${output}, want {"sum":15}`)
  if (!progress.startsWith('5/5')) problems.push(`progress ${progress}, want 5/5`)
  if (logs !== '5') problems.push(`logs ${logs}, want 5`)
  if (problems.length) throw new Error(problems.join('; '))
  console.log(`browser test: completed, output ${output}, progress ${progress}, ${logs} logs; retriggered ${retriggered}; screenshot in test-results/steps-completed.png`)
} catch (err) {
  failed = true
  console.error('browser test failed:', err)
  try {
    const page = browser?.pages()[0]
    if (page) await page.screenshot({ path: join(results, 'failure.png'), fullPage: true })
  } catch {}
} finally {
  await browser?.close().catch(() => {})
  await vite?.close().catch(() => {})
  tenants.kill('SIGTERM')
  await new Promise((r) => tenants.once('exit', r))
  rmSync(work, { recursive: true, force: true })
}
process.exit(failed ? 1 : 0)
