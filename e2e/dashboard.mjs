// The dashboard's browser test: Debian's Chromium, driven by playwright-core,
// against the Go tenants server on one store.
//
//   TENANTS_BIN=/path/to/tenants DB=<sqlite path or postgres:// DSN> STORE=sqlite node dashboard.mjs
//
// It checks, through the pages only (the API is used to set up runs and to
// confirm what an action did):
//   - tenant isolation: another organization's runs never appear in a list,
//     live or filtered by a guessed label, nor through a guessed run URL;
//   - live updates without a reload: a new run in the list, a run's
//     progress, steps, logs, retries and sleep on its page, its children
//     and the signals kept for it;
//   - actions: Cancel, Retrigger and Delete done for an admin, refused and
//     shown as refused for a viewer; a trigger from the jobs page, its input
//     checked by the server;
//   - filters, counts and keyset pages; keyboard use; a phone's width; dark;
//   - that the pages make no request outside the server's origin.
// Screenshots of each page go to test-results/, and to SCREENSHOTS when set
// (docs/images, for the README).
import { spawn } from 'node:child_process'
import { copyFileSync, mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'
import { freePort, waitHealthy } from './lib.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const store = process.env.STORE ?? 'sqlite'
const results = join(here, 'test-results', `dashboard-${store}`)
mkdirSync(results, { recursive: true })

const users = {
  admin: { 'X-User-Id': 'alice', 'X-Org-Id': 'org-a', 'X-Role': 'admin' },
  viewer: { 'X-User-Id': 'victor', 'X-Org-Id': 'org-a', 'X-Role': 'viewer' },
  other: { 'X-User-Id': 'bob', 'X-Org-Id': 'org-b', 'X-Role': 'admin' },
}
const secret = `org-b-secret-${Math.random().toString(36).slice(2)}`
const T = 20_000 // the longest any one expectation may take

function check(ok, message) {
  if (!ok) throw new Error(message)
}

let origin
// api calls the API as a user, outside any page.
async function api(user, method, path, body) {
  const res = await fetch(`${origin}/api/durably${path}`, {
    method, headers: { ...users[user], 'Content-Type': 'application/json' }, body: body && JSON.stringify(body),
  })
  const text = await res.text()
  return { status: res.status, body: text ? JSON.parse(text) : null }
}

async function trigger(user, jobName, input) {
  const res = await api(user, 'POST', '/trigger', { jobName, input })
  check(res.status === 200, `trigger ${jobName} as ${user}: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body.runId
}

async function runOf(id) { return (await api('admin', 'GET', `/run?runId=${id}`)).body }

async function waitRun(id, status) {
  const deadline = Date.now() + T
  for (;;) {
    const run = await runOf(id)
    if (run?.status === status) return run
    check(Date.now() < deadline, `run ${id} never became ${status} (is ${run?.status})`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

const bin = process.env.TENANTS_BIN
if (!bin || !process.env.DB) throw new Error('TENANTS_BIN and DB must be set')
const port = await freePort()
origin = `http://127.0.0.1:${port}`
const tenants = spawn(bin, ['-addr', `127.0.0.1:${port}`, '-db', process.env.DB, '-preserve-steps', '-shutdown-timeout', '500ms'], { stdio: 'inherit' })
let browser
const foreign = [] // requests outside the origin
const problems = [] // page errors, CSP violations
const shots = []

async function contextFor(user, forbidden, options = {}) {
  const ctx = await browser.newContext({ extraHTTPHeaders: users[user], viewport: { width: 1280, height: 860 }, ...options })
  ctx.on('request', (req) => {
    const url = req.url()
    if (!url.startsWith(`${origin}/`) && !url.startsWith('data:')) foreign.push(`${user}: ${url}`)
  })
  // Every text the page ever shows is checked for the other tenant's
  // strings, so that a row shown for a moment and replaced counts too.
  await ctx.addInitScript((forbidden) => {
    window.__leaks = []
    new MutationObserver((records) => {
      for (const r of records) {
        for (const n of [...r.addedNodes, r.target]) {
          const text = n.textContent ?? ''
          for (const f of forbidden) if (text.includes(f)) window.__leaks.push(`${f} in: ${text.slice(0, 160)}`)
        }
      }
    }).observe(document, { childList: true, subtree: true, characterData: true })
  }, forbidden)
  const page = await ctx.newPage()
  page.on('pageerror', (e) => problems.push(`${user}: ${e.message}`))
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/.test(m.text())) problems.push(`${user}: ${m.text()}`)
  })
  page.on('dialog', (d) => d.accept())
  return page
}

const dash = (path = '') => `${origin}/dashboard/${path}`

async function shot(page, name) {
  const path = join(results, `${name}.png`)
  await page.screenshot({ path, fullPage: name === 'dashboard-run' })
  shots.push(path)
}

// noReload marks the document; unmarked means the page was reloaded.
async function mark(page) { await page.evaluate(() => { window.__marked = true }) }
async function stillMarked(page, what) { check(await page.evaluate(() => window.__marked === true), `${what}: the page was reloaded`) }

async function leaks(page, who) {
  const found = await page.evaluate(() => window.__leaks)
  check(found.length === 0, `${who} saw another tenant's data: ${found.join(' | ')}`)
}

async function rowIds(page) {
  return page.$$eval('[data-testid=runs] tr[data-run-id]', (rows) => rows.map((r) => r.dataset.runId))
}

async function listPage(admin, seeded) {
  await admin.goto(dash())
  await admin.waitForSelector('[data-testid=runs] tr[data-run-id]', { timeout: T })
  await admin.waitForSelector('[data-testid=count-all]', { timeout: T })
  const first = await rowIds(admin)
  check(first.length === 50, `first page has ${first.length} runs, want 50`)
  check(first.every((id) => seeded.orgA.has(id)), 'a run of another organization is listed')
  const all = Number((await admin.textContent('[data-testid=count-all] .n')).replace(/\D/g, ''))
  check(all === seeded.orgA.size, `count of all runs ${all}, want ${seeded.orgA.size}`)

  // Keyset pages: older runs, none twice, then back to the newest.
  await admin.click('[data-testid=older]')
  await admin.waitForURL(/after=/, { timeout: T })
  await admin.waitForFunction((first) => {
    const ids = [...document.querySelectorAll('[data-testid=runs] tr[data-run-id]')].map((r) => r.dataset.runId)
    return ids.length > 0 && !ids.some((id) => first.includes(id))
  }, first, { timeout: T })
  const second = await rowIds(admin)
  check(first.length + second.length === seeded.orgA.size, `two pages hold ${first.length + second.length} runs, want ${seeded.orgA.size}`)
  await admin.goBack()
  await admin.waitForFunction((id) => document.querySelector('[data-testid=runs] tr[data-run-id]')?.dataset.runId === id, first[0], { timeout: T })

  // Live: a new run of the organization appears without a reload; the
  // other organization's, triggered at the same moment, never does.
  await mark(admin)
  const others = await Promise.all([trigger('other', 'echo', { message: `${secret} live` }), trigger('other', 'fail', { failAt: 1 })])
  const fresh = await trigger('admin', 'steps', { count: 2, delayMs: 50 })
  seeded.orgA.add(fresh)
  await admin.waitForSelector(`[data-testid=runs] tr[data-run-id="${fresh}"][data-status=completed]`, { timeout: T })
  await stillMarked(admin, 'live list')
  for (const id of others) check(!(await rowIds(admin)).includes(id), `the list shows ${id} of org-b`)

  // Filters: a status from the counts, a job, a guessed label of the other
  // organization (the hook replaces it), a time range with no runs.
  await admin.click('[data-testid=count-failed]')
  await admin.waitForURL(/status=failed/, { timeout: T })
  await admin.waitForFunction(() => {
    const rows = [...document.querySelectorAll('[data-testid=runs] tr[data-run-id]')]
    return rows.length > 0 && rows.every((r) => r.dataset.status === 'failed')
  }, null, { timeout: T })
  await admin.goto(dash('?jobName=echo&label.organizationId=org-b'))
  await admin.waitForSelector('[data-testid=runs] tr[data-run-id]', { timeout: T })
  const guessed = await rowIds(admin)
  check(guessed.every((id) => seeded.orgA.has(id)), 'a guessed label listed another organization\'s run')
  await admin.goto(dash())
  await admin.waitForSelector('[data-testid=filters]', { timeout: T })
  await admin.fill('input[name=createdFrom]', '2099-01-01T00:00')
  await admin.click('[data-testid=filters] button[type=submit]')
  await admin.waitForURL(/createdFrom=2099/, { timeout: T })
  await admin.waitForSelector('[data-testid=empty]', { timeout: T })
}

async function runPageLive(admin) {
  // Progress, steps and logs arrive live.
  const id = await trigger('admin', 'steps', { count: 5, delayMs: 300 })
  await admin.goto(dash(`runs/${id}`))
  await admin.waitForSelector('[data-testid=summary]', { timeout: T })
  await mark(admin)
  await admin.waitForFunction(() => document.querySelector('h1 [data-testid=status]')?.textContent === 'completed', null, { timeout: T })
  await stillMarked(admin, 'live run page')
  check((await admin.$$('[data-testid=steps] tbody tr')).length === 5, 'the completed run shows 5 steps')
  check((await admin.$$('[data-testid=logs] tbody tr')).length === 5, 'the completed run shows 5 logs')
  check((await admin.textContent('[data-testid=summary] [data-testid=progress]')).includes('5/5'), 'progress 5/5')
  check((await admin.textContent('[data-testid=output]')).includes('"sum": 15'), 'output sum 15')

  // Retries and a durable sleep: the wait is shown, attempts with their
  // errors, live to the end.
  const flaky = await trigger('admin', 'flaky', { failures: 2, sleepMs: 2500 })
  await admin.goto(dash(`runs/${flaky}`))
  await mark(admin)
  await admin.waitForFunction(() => /Retry of step try/.test(document.querySelector('[data-testid=wait]')?.textContent ?? ''), null, { timeout: T })
  await admin.waitForFunction(() => /Sleeping in step nap/.test(document.querySelector('[data-testid=wait]')?.textContent ?? ''), null, { timeout: T })
  const errors = await admin.$$eval('[data-testid=attempts] tbody tr', (rows) => rows.map((r) => `${r.dataset.outcome}: ${r.textContent}`))
  check(errors.length === 2 && /^failed: .*attempt 1 failed/.test(errors[0]) && /^failed: .*attempt 2 failed/.test(errors[1]), `attempts shown: ${errors}`)
  await admin.waitForFunction(() => document.querySelector('h1 [data-testid=status]')?.textContent === 'completed', null, { timeout: T })
  await stillMarked(admin, 'live retries')
  check((await admin.textContent('[data-testid=output]')).includes('"attempts": 3'), 'flaky output')
  await admin.waitForSelector('[data-testid=logs] tbody tr', { timeout: T })
  await shot(admin, 'dashboard-run')
}

// familyPage: a run's children and the signals kept for it are shown on
// its page, live; a child links to its parent (issue 22).
async function familyPage(admin) {
  const id = await trigger('admin', 'review', { count: 2, ms: 12000 })
  await admin.goto(dash(`runs/${id}`))
  await mark(admin)
  await admin.waitForFunction(() => /Waiting for its children/.test(document.querySelector('[data-testid=wait]')?.textContent ?? ''), null, { timeout: T })
  await admin.waitForFunction(() => document.querySelectorAll('[data-testid=children] tbody tr').length === 2, null, { timeout: T })
  check(await admin.$eval('[data-testid=signals-section]', (n) => n.closest('section').hidden), 'no signal kept: the section is hidden')
  const sent = await api('admin', 'POST', `/signal?runId=${id}`, { name: 'approve', payload: { by: 'rita' } })
  check(sent.status === 200, `signal: ${sent.status} ${JSON.stringify(sent.body)}`)
  const refused = await api('admin', 'POST', `/signal?runId=${id}`, { name: 'approve', payload: { by: '' } })
  check(refused.status === 400 && /Invalid payload: by/.test(refused.body.error), `a bad payload: ${refused.status} ${JSON.stringify(refused.body)}`)
  // Kept while the parent waits for its children (12 s: the page's 5 s
  // look, which shows what no event announces, comes twice meanwhile),
  // then received.
  await admin.waitForFunction(() => (document.querySelector('[data-testid=signals]')?.textContent ?? '').includes('rita'), null, { timeout: T })
  await admin.waitForFunction(() => document.querySelector('h1 [data-testid=status]')?.textContent === 'completed', null, { timeout: T })
  await admin.waitForFunction(() => document.querySelector('[data-testid=signals-section]').closest('section').hidden, null, { timeout: T })
  await stillMarked(admin, 'live family')
  check((await admin.textContent('[data-testid=output]')).includes('"approvedBy": "rita"'), 'review output')
  const child = await admin.$eval('[data-testid=children] tbody tr a', (a) => a.getAttribute('href'))
  await admin.goto(dash(child))
  await admin.waitForSelector('[data-testid=summary] [data-testid=parent] a', { timeout: T })
  await admin.click('[data-testid=summary] [data-testid=parent] a')
  await admin.waitForFunction((id) => location.pathname.endsWith(`/runs/${id}`), id, { timeout: T })
}

// act clicks an action and returns the result shown once it settles.
async function act(page, action) {
  await page.click(`[data-testid=${action}]`)
  await page.waitForFunction(() => ['done', 'refused'].includes(document.querySelector('[data-testid=action-result]')?.dataset.state)
    || document.querySelector('[data-testid=flash]'), null, { timeout: T })
  return page.evaluate(() => {
    const r = document.querySelector('[data-testid=action-result]')
    return { state: r?.dataset.state, text: r?.textContent ?? '', flash: document.querySelector('[data-testid=flash]')?.textContent ?? '' }
  })
}

async function actions(admin, viewer) {
  const slow = await trigger('admin', 'slow', { ms: 600_000 })
  const done = await trigger('admin', 'echo', { message: 'to retrigger' })
  await waitRun(slow, 'leased')
  await waitRun(done, 'completed')

  // A viewer's actions are refused by the hook, and shown as refused.
  await viewer.goto(dash(`runs/${slow}`))
  await viewer.waitForSelector('[data-testid=summary]', { timeout: T })
  let r = await act(viewer, 'cancel')
  check(r.state === 'refused' && r.text === 'Cancel refused: 403 Forbidden', `viewer cancel: ${JSON.stringify(r)}`)
  check((await runOf(slow)).status === 'leased', 'a refused cancel cancelled the run')
  await viewer.goto(dash(`runs/${done}`))
  await viewer.waitForSelector('[data-testid=summary]', { timeout: T })
  // By keyboard: Tab to Retrigger, Enter.
  for (let i = 0; i < 40 && !(await viewer.evaluate(() => document.activeElement?.dataset.testid === 'retrigger')); i++) await viewer.keyboard.press('Tab')
  check(await viewer.evaluate(() => document.activeElement?.dataset.testid === 'retrigger'), 'Retrigger is not reachable by Tab')
  await viewer.keyboard.press('Enter')
  await viewer.waitForFunction(() => document.querySelector('[data-testid=action-result]')?.dataset.state === 'refused', null, { timeout: T })
  check((await viewer.textContent('[data-testid=action-result]')) === 'Retrigger refused: 403 Forbidden', 'viewer retrigger')
  r = await act(viewer, 'delete')
  check(r.state === 'refused' && r.text === 'Delete refused: 403 Forbidden', `viewer delete: ${JSON.stringify(r)}`)
  check((await runOf(done))?.status === 'completed', 'a refused delete deleted the run')

  // An admin's are done; the page follows.
  await admin.goto(dash(`runs/${slow}`))
  await admin.waitForSelector('[data-testid=summary]', { timeout: T })
  r = await act(admin, 'cancel')
  check(r.state === 'done', `admin cancel: ${JSON.stringify(r)}`)
  await admin.waitForFunction(() => document.querySelector('h1 [data-testid=status]')?.textContent === 'cancelled', null, { timeout: T })
  check((await runOf(slow)).status === 'cancelled', 'the run was not cancelled')

  await admin.goto(dash(`runs/${done}`))
  await admin.waitForSelector('[data-testid=summary]', { timeout: T })
  r = await act(admin, 'retrigger')
  check(r.flash.startsWith(`Retriggered from run ${done}`), `admin retrigger: ${JSON.stringify(r)}`)
  const again = decodeURIComponent(new URL(admin.url()).pathname.split('/').pop())
  check(again !== done, 'retrigger stayed on the same run')
  await admin.waitForFunction(() => document.querySelector('h1 [data-testid=status]')?.textContent === 'completed', null, { timeout: T })

  await admin.goto(dash(`runs/${done}`))
  await admin.waitForSelector('[data-testid=summary]', { timeout: T })
  r = await act(admin, 'delete')
  check(r.flash === `Deleted run ${done}.`, `admin delete: ${JSON.stringify(r)}`)
  check((await api('admin', 'GET', `/run?runId=${done}`)).status === 404, 'the run was not deleted')
  await admin.goto(dash(`runs/${done}`))
  await admin.waitForFunction(() => document.querySelector('[data-testid=action-result]')?.dataset.state === 'missing', null, { timeout: T })
  return slow
}

async function guessedURLs(admin, other, seeded, orgARun) {
  // A guessed URL shows the refusal, never the run.
  await admin.goto(dash(`runs/${seeded.secretRun}`))
  await admin.waitForFunction(() => document.querySelector('[data-testid=action-result]')?.dataset.state === 'refused', null, { timeout: T })
  check((await admin.textContent('[data-testid=action-result]')) === 'This run cannot be shown: 403 Forbidden', 'refusal text')
  check(!(await admin.content()).includes(secret), 'the refused page holds the run\'s input')
  check((await admin.$$('[data-testid=summary]')).length === 0, 'a refused run shows a summary')
  await other.goto(dash(`runs/${orgARun}`))
  await other.waitForFunction(() => document.querySelector('[data-testid=action-result]')?.dataset.state === 'refused', null, { timeout: T })
  await other.goto(dash())
  await other.waitForSelector('[data-testid=runs] tr[data-run-id]', { timeout: T })
  check((await rowIds(other)).every((id) => seeded.orgB.has(id) || !seeded.orgA.has(id)), 'org-b\'s list shows org-a\'s runs')
}

async function jobsPage(admin, viewer) {
  await admin.goto(dash('jobs'))
  await admin.waitForSelector('[data-job=flaky]', { timeout: T })
  check((await admin.$$('[data-job]')).length === 6, 'six jobs')
  check((await admin.textContent('[data-job=flaky] [data-testid=retry]')).startsWith('4 attempts in all, fixed backoff from 1 s'), 'retry policy')
  check((await admin.textContent('[data-job=flaky] [data-testid=max-running]')) === '2', 'max running')
  check(/in \d+/.test(await admin.textContent('[data-job=flaky] [data-testid=next-tick]')), 'next tick')
  await admin.evaluate(() => document.getElementById('job-flaky').scrollIntoView())
  await shot(admin, 'dashboard-jobs')
  const form = '[data-job=echo] [data-testid=trigger-form]'
  // The example input (an empty message) is refused by the schema, by name.
  await admin.click(`${form} [data-testid=trigger]`)
  await admin.waitForFunction((f) => document.querySelector(`${f} [data-testid=trigger-result]`)?.dataset.state === 'refused', form, { timeout: T })
  const refused = await admin.textContent(`${form} [data-testid=trigger-result]`)
  check(/^Not triggered: 400 .*message/.test(refused), `invalid input: ${refused}`)
  await admin.fill(`${form} [data-testid=trigger-input]`, '{"message": ')
  await admin.click(`${form} [data-testid=trigger]`)
  await admin.waitForFunction((f) => /not JSON/.test(document.querySelector(`${f} [data-testid=trigger-result]`)?.textContent), form, { timeout: T })
  await admin.fill(`${form} [data-testid=trigger-input]`, '{"message": "from the dashboard"}')
  await admin.click(`${form} [data-testid=trigger]`)
  await admin.waitForURL(/\/dashboard\/runs\//, { timeout: T })
  check((await admin.textContent('[data-testid=flash]')) === 'Triggered echo (created).', 'trigger flash')
  await admin.waitForFunction(() => document.querySelector('h1 [data-testid=status]')?.textContent === 'completed', null, { timeout: T })
  const id = decodeURIComponent(new URL(admin.url()).pathname.split('/').pop())

  await viewer.goto(dash('jobs#job-echo'))
  await viewer.waitForSelector(form, { timeout: T })
  await viewer.fill(`${form} [data-testid=trigger-input]`, '{"message": "viewer"}')
  await viewer.click(`${form} [data-testid=trigger]`)
  await viewer.waitForFunction((f) => document.querySelector(`${f} [data-testid=trigger-result]`)?.dataset.state === 'refused', form, { timeout: T })
  check((await viewer.textContent(`${form} [data-testid=trigger-result]`)) === 'Not triggered: 403 Forbidden', 'viewer trigger')
  return id
}

async function keyboardAndScreens(admin) {
  // The list as the README shows it: a run in progress among finished ones.
  await trigger('admin', 'steps', { count: 40, delayMs: 500 })
  await admin.goto(dash())
  await admin.waitForSelector('[data-testid=runs] tr[data-status=leased] [data-testid=progress]', { timeout: T })
  await shot(admin, 'dashboard-runs')

  // From the list to a run by keyboard; the run's heading gets the focus.
  await admin.goto(dash())
  await admin.waitForSelector('[data-testid=runs] tr[data-run-id] a', { timeout: T })
  for (let i = 0; i < 60 && !(await admin.evaluate(() => document.activeElement?.closest('[data-testid=runs]') !== null)); i++) await admin.keyboard.press('Tab')
  const target = await admin.evaluate(() => document.activeElement?.textContent)
  check(/^[0-9A-Z]{26}$/.test(target ?? ''), `Tab did not reach a run link (at ${target})`)
  await admin.keyboard.press('Enter')
  await admin.waitForURL(new RegExp(`/runs/${target}$`), { timeout: T })
  await admin.waitForFunction(() => document.activeElement?.tagName === 'H1', null, { timeout: T })

  // A phone: nothing wider than the screen. Dark: a dark page.
  for (const path of ['', `runs/${target}`, 'jobs']) {
    await admin.setViewportSize({ width: 390, height: 844 })
    await admin.goto(dash(path))
    await admin.waitForSelector('h1', { timeout: T })
    await admin.waitForLoadState('networkidle').catch(() => {})
    const overflow = await admin.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
    check(overflow <= 0, `the page ${path || '/'} is ${overflow}px wider than a phone`)
  }
  await admin.emulateMedia({ colorScheme: 'dark' })
  await admin.goto(dash())
  await admin.waitForSelector('[data-testid=runs] tr[data-run-id]', { timeout: T })
  const bg = await admin.evaluate(() => getComputedStyle(document.body).backgroundColor)
  const [r, g, b] = bg.match(/\d+/g).map(Number)
  check(r + g + b < 150, `dark background is ${bg}`)
  await shot(admin, 'dashboard-phone-dark')
}

let failed = false
try {
  await waitHealthy(`${origin}/healthz`, 30_000)
  // Seed: org-a has more runs than a page; org-b has a run with a secret.
  const seeded = { orgA: new Set(), orgB: new Set() }
  seeded.secretRun = await trigger('other', 'echo', { message: secret })
  seeded.orgB.add(seeded.secretRun)
  seeded.orgA.add(await trigger('admin', 'fail', { failAt: 2 }))
  for (let i = 0; i < 60; i++) seeded.orgA.add(await trigger('admin', 'echo', { message: `hello ${i}` }))

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
  const admin = await contextFor('admin', ['org-b', secret])
  const viewer = await contextFor('viewer', ['org-b', secret])
  const other = await contextFor('other', ['org-a'])

  await listPage(admin, seeded)
  await runPageLive(admin)
  await familyPage(admin)
  const slow = await actions(admin, viewer)
  await guessedURLs(admin, other, seeded, slow)
  await jobsPage(admin, viewer)
  await keyboardAndScreens(admin)
  for (const [page, who] of [[admin, 'admin'], [viewer, 'viewer'], [other, 'other']]) await leaks(page, who)
  check(foreign.length === 0, `requests outside ${origin}: ${foreign.join(', ')}`)
  check(problems.length === 0, `page errors: ${problems.join(' | ')}`)
  if (process.env.SCREENSHOTS) for (const s of shots) copyFileSync(s, join(process.env.SCREENSHOTS, s.split('/').pop()))
  console.log(`dashboard test (${store}): passed; screenshots in ${results}`)
} catch (err) {
  failed = true
  console.error(`dashboard test (${store}) failed:`, err)
  for (const ctx of browser?.contexts() ?? []) {
    for (const [i, page] of ctx.pages().entries()) {
      await page.screenshot({ path: join(results, `failure-${i}-${Date.now()}.png`), fullPage: true }).catch(() => {})
    }
  }
} finally {
  await browser?.close().catch(() => {})
  tenants.kill('SIGTERM')
  await new Promise((r) => tenants.once('exit', r))
}
process.exit(failed ? 1 : 0)
