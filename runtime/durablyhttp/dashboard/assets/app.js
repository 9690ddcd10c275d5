// The durably dashboard: one module, no build step, no dependency. It reads
// and acts only through the handler's own API, served under ./api/ beside
// the pages, so every request passes the same hooks as any other client:
// what a hook refuses is shown as refused, never hidden or worked around.
//
// Pages (relative to the dashboard's root, the document's <base>):
//   ./              the runs: status counts, filters, pages, live updates
//   ./runs/{id}     one run: state, steps, attempts, logs, actions, live
//   ./jobs          the jobs: schemas, schedules, retry policies, limits, trigger

const base = new URL(document.baseURI)
const main = document.getElementById('main')
const liveIndicator = document.querySelector('[data-testid=live]')
const appTitle = document.body.dataset.title || 'durably'
const PAGE_SIZE = 50
const STATUSES = ['pending', 'leased', 'completed', 'failed', 'cancelled']
const CLOSING_EVENTS = new Set(['run:complete', 'run:fail', 'run:cancel', 'run:delete'])

// ---------------------------------------------------------------- DOM

// el builds an element: attrs are attributes (on* keys are listeners,
// false/null/undefined values are left out), children are nodes or text.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag)
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value)
    else node.setAttribute(key, value === true ? '' : String(value))
  }
  append(node, children)
  return node
}

function append(node, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue
    node.append(child instanceof Node ? child : document.createTextNode(String(child)))
  }
  return node
}

// fill replaces node's children, as append takes them.
function fill(node, ...children) {
  node.replaceChildren()
  return append(node, ...children)
}

// cell is a table cell labelled for the phone layout, where each row is a
// card and each cell shows its column's name; the content is one element.
function cell(label, attrs, ...content) {
  return el('td', { 'data-label': label, ...attrs }, el('div', {}, ...content))
}

function panel(...children) { return el('section', { class: 'panel' }, ...children) }

function badge(status) { return el('span', { class: `badge ${status}`, 'data-testid': 'status' }, status) }

function pre(value, testid) {
  return el('pre', { 'data-testid': testid }, value === undefined ? '—' : JSON.stringify(value, null, 2))
}

// ---------------------------------------------------------------- time

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' })

function time(iso) {
  if (!iso) return el('span', { class: 'muted' }, '—')
  const d = new Date(iso)
  return el('time', { datetime: iso, title: iso }, dateTime.format(d))
}

function duration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—'
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`
  const s = ms / 1000
  if (s < 60) return `${Number(s.toFixed(s < 10 ? 2 : 1))} s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`
  const h = Math.floor(m / 60)
  if (h < 48) return `${h} h ${m % 60} min`
  return `${Math.floor(h / 24)} d ${h % 24} h`
}

function between(from, to) {
  if (!from) return null
  return (to ? Date.parse(to) : Date.now()) - Date.parse(from)
}

function relative(iso) {
  const ms = Date.parse(iso) - Date.now()
  return ms >= 0 ? `in ${duration(ms)}` : `${duration(-ms)} ago`
}

// datetime-local inputs hold local wall-clock time without a zone.
function toLocalInput(iso) {
  if (!iso) return ''
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return ''
  const p = (n) => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`
}

function fromLocalInput(value) {
  if (!value) return ''
  const d = new Date(value)
  return Number.isNaN(d.getTime()) ? '' : d.toISOString()
}

// ---------------------------------------------------------------- API

class APIError extends Error {
  constructor(status, message) {
    super(message)
    this.status = status
  }
  // The refusal as the page shows it: the status and the server's words.
  get shown() { return this.status ? `${this.status} ${this.message}` : this.message }
}

// call sends one request to the API and returns its JSON; a non-2xx answer
// throws an APIError with the server's message ({"error"} or plain text).
async function call(method, path, params = {}, body) {
  const url = apiURL(path, params)
  let res
  try {
    res = await fetch(url, {
      method,
      credentials: 'same-origin',
      headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
  } catch (err) {
    throw new APIError(0, `the server could not be reached (${err.message})`)
  }
  const text = await res.text()
  let data
  try { data = text ? JSON.parse(text) : undefined } catch { data = undefined }
  if (!res.ok) {
    const message = data && typeof data.error === 'string' ? data.error : (text.trim() || res.statusText)
    throw new APIError(res.status, message)
  }
  return data
}

function apiURL(path, params) {
  const url = new URL(`api/${path}`, base)
  for (const [key, value] of Object.entries(params)) {
    for (const v of [value].flat()) if (v !== undefined && v !== null && v !== '') url.searchParams.append(key, v)
  }
  return url
}

// ---------------------------------------------------------------- live

function setLive(state) {
  liveIndicator.dataset.state = state
  liveIndicator.textContent = { live: 'Live', reconnecting: 'Reconnecting…' }[state] ?? ''
}

// follow opens an event stream of the API for the current page; the
// browser reconnects it by itself after a drop.
function follow(page, path, params, onEvent) {
  if (page.left) return { close() {} } // the person moved on while the page loaded
  const stream = new EventSource(apiURL(path, params))
  stream.onopen = () => setLive('live')
  stream.onerror = () => setLive(stream.readyState === EventSource.CLOSED ? '' : 'reconnecting')
  stream.onmessage = (message) => {
    let event
    try { event = JSON.parse(message.data) } catch { return }
    onEvent(event, stream)
  }
  page.onLeave(() => { stream.close(); setLive('') })
  return stream
}

// coalesce returns a function that runs fn at most once per ms, and once
// more after the last call, never two at once: live events arrive in
// bursts, a page needs one reload per burst.
function coalesce(page, fn, ms) {
  let timer = null
  let running = false
  let again = false
  const run = async () => {
    timer = null
    if (running) { again = true; return }
    running = true
    try { await fn() } finally {
      running = false
      if (again) { again = false; schedule() }
    }
  }
  const schedule = () => { if (timer === null && !page.left) timer = setTimeout(run, ms) }
  page.onLeave(() => clearTimeout(timer))
  return schedule
}

// ---------------------------------------------------------------- routing

let current = null
let flash = null // a message for the next page: what the last action did

function route() {
  const path = location.pathname.startsWith(base.pathname) ? location.pathname.slice(base.pathname.length) : null
  if (path === '') return { view: runsPage, section: 'runs' }
  if (path === 'jobs') return { view: jobsPage, section: 'jobs' }
  const match = path === null ? null : /^runs\/([^/]+)$/.exec(path)
  if (match) return { view: runPage, section: 'runs', id: decodeURIComponent(match[1]) }
  return { view: missingPage, section: '' }
}

function render({ focus = false } = {}) {
  current?.leave()
  const leaving = []
  const page = {
    left: false,
    onLeave(fn) { leaving.push(fn) },
    leave() { this.left = true; for (const fn of leaving) fn() },
  }
  current = page
  const r = route()
  for (const a of document.querySelectorAll('.top nav a')) {
    if (a.dataset.section === r.section) a.setAttribute('aria-current', 'page')
    else a.removeAttribute('aria-current')
  }
  fill(main)
  const shown = flash
  flash = null
  r.view(page, r, shown).then(() => {
    if (focus && !page.left) main.querySelector('h1')?.focus()
  }, (err) => {
    if (!page.left) fill(main, el('p', { class: 'notice error', role: 'alert' }, `The page failed: ${err.message}`))
  })
}

function navigate(url, message) {
  flash = message ?? null
  history.pushState(null, '', url)
  render({ focus: true })
}

function insideDashboard(url) {
  if (url.origin !== location.origin || !url.pathname.startsWith(base.pathname)) return false
  const rest = url.pathname.slice(base.pathname.length)
  return !rest.startsWith('api/') && !rest.startsWith('assets/')
}

document.addEventListener('click', (event) => {
  const a = event.target.closest('a[href]')
  if (!a || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey || a.target) return
  const url = new URL(a.href)
  if (!insideDashboard(url)) return
  event.preventDefault()
  if (url.pathname === location.pathname && url.search === location.search && url.hash) {
    history.pushState(null, '', url)
    document.getElementById(url.hash.slice(1))?.scrollIntoView()
    return
  }
  navigate(url)
})
window.addEventListener('popstate', () => render({ focus: true }))

function flashMessage(message) {
  if (!message) return null
  return el('p', { class: `message ${message.kind}`, role: message.kind === 'error' ? 'alert' : 'status', 'data-testid': 'flash' }, message.text)
}

// ---------------------------------------------------------------- runs

function runHref(id) { return `runs/${encodeURIComponent(id)}` }

// readFilter reads the list's filter from the page's query: the API's own
// parameters, so a page's URL is the list it shows.
function readFilter(query) {
  const labels = []
  for (const [key, value] of query) if (key.startsWith('label.')) labels.push([key.slice(6), value])
  return {
    status: query.get('status') ?? '',
    jobName: query.get('jobName') ?? '',
    labels,
    createdFrom: query.get('createdFrom') ?? '',
    createdTo: query.get('createdTo') ?? '',
    after: query.get('after') ?? '',
  }
}

// filterParams are the filter as the API's query parameters (and the
// page's); empty members are left out.
function filterParams(filter) {
  const params = {}
  for (const key of ['status', 'jobName', 'createdFrom', 'createdTo', 'after']) if (filter[key]) params[key] = filter[key]
  for (const [k, v] of filter.labels) params[`label.${k}`] = v
  return params
}

function listHref(filter, changes = {}) {
  const query = new URLSearchParams(filterParams({ ...filter, ...changes })).toString()
  return query ? `./?${query}` : './'
}

function parseLabels(text) {
  const labels = []
  for (const token of text.split(/[\s,]+/).filter(Boolean)) {
    const at = token.indexOf('=')
    if (at <= 0) throw new Error(`Labels: write key=value pairs, got "${token}"`)
    labels.push([token.slice(0, at), token.slice(at + 1)])
  }
  return labels
}

function filterForm(filter, jobNames) {
  const message = el('p', { class: 'message error', role: 'alert' })
  const form = el('form', { class: 'filters', 'aria-label': 'Filter runs', 'data-testid': 'filters' },
    el('label', {}, 'Status', el('select', { name: 'status' },
      el('option', { value: '' }, 'any'),
      STATUSES.map((s) => el('option', { value: s, selected: s === filter.status }, s)))),
    el('label', {}, 'Job', el('input', { name: 'jobName', value: filter.jobName, list: 'job-names', autocomplete: 'off', placeholder: 'any' })),
    el('datalist', { id: 'job-names' }, jobNames.map((n) => el('option', { value: n }))),
    el('label', {}, 'Labels', el('input', { name: 'labels', value: filter.labels.map(([k, v]) => `${k}=${v}`).join(' '), placeholder: 'key=value …', autocomplete: 'off' })),
    el('label', {}, 'Created from', el('input', { name: 'createdFrom', type: 'datetime-local', step: 1, value: toLocalInput(filter.createdFrom) })),
    el('label', {}, 'Created before', el('input', { name: 'createdTo', type: 'datetime-local', step: 1, value: toLocalInput(filter.createdTo) })),
    el('div', { class: 'actions' },
      el('button', { class: 'primary', type: 'submit' }, 'Apply'),
      el('a', { class: 'button', href: './' }, 'Clear')))
  form.addEventListener('submit', (event) => {
    event.preventDefault()
    const data = new FormData(form)
    try {
      const next = {
        status: data.get('status'), jobName: data.get('jobName').trim(), labels: parseLabels(data.get('labels')),
        createdFrom: fromLocalInput(data.get('createdFrom')), createdTo: fromLocalInput(data.get('createdTo')), after: '',
      }
      navigate(listHref(next))
    } catch (err) {
      message.textContent = err.message
    }
  })
  // On a phone the filters fold away unless some are set.
  const open = filter.status || filter.jobName || filter.labels.length || filter.createdFrom || filter.createdTo || matchMedia('(min-width: 40rem)').matches
  return el('details', { class: 'filters-box', open: Boolean(open) }, el('summary', {}, 'Filters'), form, message)
}

function countsList(filter, counts) {
  const total = STATUSES.reduce((n, s) => n + (counts[s] ?? 0), 0)
  const item = (status, label, n) => el('li', {}, el('a', {
    href: listHref(filter, { status, after: '' }), 'aria-current': filter.status === status ? 'true' : false,
    'data-testid': `count-${status || 'all'}`,
  }, el('span', { class: 'n' }, n.toLocaleString()), el('span', { class: 'k' }, label)))
  return [item('', 'all', total), STATUSES.map((s) => item(s, s, counts[s] ?? 0))]
}

function progressOf(run) {
  const p = run.progress
  if (!p) return run.isTerminal ? null : el('span', { class: 'muted' }, `${run.completedStepCount} steps`)
  const text = [p.total ? `${p.current}/${p.total}` : String(p.current), p.message].filter(Boolean).join(' · ')
  return el('span', { 'data-testid': 'progress' },
    p.total ? el('progress', { value: p.current, max: p.total }) : null, ' ', text)
}

function labelChips(labels) {
  return Object.entries(labels ?? {}).map(([k, v]) =>
    el('a', { class: 'chip', href: listHref({ status: '', jobName: '', labels: [[k, v]], createdFrom: '', createdTo: '', after: '' }) }, `${k}=${v}`))
}

function runRow(run) {
  const wait = run.status === 'pending' && run.runAt && Date.parse(run.runAt) > Date.now() ? ` until ${dateTime.format(new Date(run.runAt))}` : ''
  return el('tr', { 'data-run-id': run.id, 'data-status': run.status },
    cell('Run', {}, el('a', { class: 'mono', href: runHref(run.id) }, run.id)),
    cell('Job', {}, run.jobName),
    cell('Status', {}, badge(run.status), wait ? el('span', { class: 'muted' }, wait) : null),
    cell('Progress', {}, progressOf(run)),
    cell('Labels', {}, labelChips(run.labels)),
    cell('Created', {}, time(run.createdAt)),
    cell('Duration', { class: 'num' }, duration(between(run.startedAt, run.completedAt))))
}

async function jobNamesOrNone() {
  try { return (await call('GET', 'jobs')).map((j) => j.name) } catch { return [] }
}

async function runsPage(page, _route, shown) {
  document.title = `Runs · ${appTitle}`
  const filter = readFilter(new URLSearchParams(location.search))
  const counts = el('ul', { class: 'counts', 'data-testid': 'counts', 'aria-label': 'Runs per status' })
  const message = el('p', { class: 'message error', role: 'alert', 'data-testid': 'list-error' })
  const rows = el('tbody', { 'data-testid': 'runs' })
  const pager = el('nav', { class: 'pager', 'aria-label': 'Pages' })
  const form = el('div')
  append(main, 
    el('h1', { tabindex: -1 }, 'Runs'), flashMessage(shown), counts,
    panel(form), message,
    panel(el('div', { class: 'table-wrap' }, el('table', { class: 'cards' },
      el('thead', {}, el('tr', {}, ['Run', 'Job', 'Status', 'Progress', 'Labels', 'Created'].map((c) => el('th', { scope: 'col' }, c)),
        el('th', { scope: 'col', class: 'num' }, 'Duration'))),
      rows)), pager))
  jobNamesOrNone().then((names) => { if (!page.left) fill(form, filterForm(filter, names)) })

  const listQuery = filterParams(filter)
  const countQuery = filterParams({ ...filter, status: '', after: '' })
  let lastCounts = 0
  const load = async () => {
    try {
      const wantCounts = Date.now() - lastCounts > 2500
      const [runs, c] = await Promise.all([
        call('GET', 'runs', { ...listQuery, limit: PAGE_SIZE + 1 }),
        wantCounts ? call('GET', 'runs/counts', countQuery) : null,
      ])
      if (page.left) return
      if (c) { lastCounts = Date.now(); fill(counts, ...countsList(filter, c)) }
      const shownRuns = runs.slice(0, PAGE_SIZE)
      fill(rows, ...(shownRuns.length ? shownRuns.map(runRow)
        : [el('tr', {}, el('td', { colspan: 7, class: 'muted', 'data-testid': 'empty' }, 'No runs match.'))]))
      const last = shownRuns[shownRuns.length - 1]
      fill(pager,
        filter.after ? el('a', { class: 'button', href: listHref(filter, { after: '' }) }, '« Newest') : null,
        runs.length > PAGE_SIZE ? el('a', { class: 'button', href: listHref(filter, { after: `${last.createdAt},${last.id}` }), 'data-testid': 'older' }, 'Older »') : null)
      message.textContent = ''
    } catch (err) {
      if (!page.left) message.textContent = `The runs could not be read: ${err.shown}`
    }
  }
  await load()
  const reload = coalesce(page, load, 500)
  // The list stream takes the job and label filters; the hooks scope it as
  // they scope the list.
  follow(page, 'runs/subscribe', filterParams({ ...filter, status: '', createdFrom: '', createdTo: '', after: '' }), reload)
}

// ---------------------------------------------------------------- one run

// attemptsOf lists a run's unsuccessful attempts: the run's own history
// (run.attempts: failed, crashed or timed out, R-213) when the server sends
// one, else its failed step rows.
function attemptsOf(run, steps) {
  if (Array.isArray(run.attempts)) {
    return run.attempts.map((a, i) => ({
      attempt: a.attempt ?? i + 1, outcome: a.outcome ?? 'failed', step: a.step ?? null,
      error: a.error ?? '', at: a.at ?? null, worker: a.worker ?? null,
    }))
  }
  return (steps ?? []).filter((s) => s.status === 'failed')
    .map((s) => ({ attempt: s.attempt, outcome: 'failed', step: s.name, error: s.error ?? '', at: s.completedAt, worker: null }))
}

// waitOf says why a pending run with a run-at time waits: a retry after a
// failed attempt, a durable sleep, a start scheduled for later.
function waitOf(run, steps) {
  if (run.status !== 'pending' || !run.runAt) return null
  const last = steps?.length ? steps[steps.length - 1] : null
  let what = 'Waiting'
  if (run.waitingFor === 'children') return { what: 'Waiting for its children', text: waitingText('Waiting for its children', run) }
  if (run.waitingFor?.startsWith('signal:')) return { what: 'Waiting for a signal', text: waitingText(`Waiting for the signal ${run.waitingFor.slice(7)}`, run) }
  if (last?.status === 'failed') what = `Retry of step ${last.name} (attempt ${last.attempt + 1})`
  else if (last?.status === 'completed' && typeof last.output === 'string' && Date.parse(last.output) === Date.parse(run.runAt)) what = `Sleeping in step ${last.name}`
  else if (!run.startedAt) what = 'Scheduled to start'
  else if (run.attempt > 0) what = `Retry (attempt ${run.attempt + 1})`
  const due = Date.parse(run.runAt) <= Date.now()
  return { what, text: `${what} ${due ? 'is due: waiting for a worker' : `at ${dateTime.format(new Date(run.runAt))} (${relative(run.runAt)})`}` }
}

// waitingText says what a run waiting for an event waits for, and until
// when: its wait's timeout, or none (the year 9999 of a wait without one).
function waitingText(what, run) {
  const at = Date.parse(run.runAt)
  if (at <= Date.now()) return `${what}: it came, waiting for a worker`
  if (new Date(at).getUTCFullYear() >= 9999) return what
  return `${what}, at most until ${dateTime.format(new Date(at))} (${relative(run.runAt)})`
}

// familyTable lists a run's children, linked, with their job and status.
function familyTable(children) {
  return el('div', { class: 'table-wrap' }, el('table', { class: 'cards', 'data-testid': 'children' },
    el('thead', {}, el('tr', {}, ['Run', 'Job', 'Status', 'Created'].map((c) => el('th', { scope: 'col' }, c)))),
    el('tbody', {}, children.map((r) => el('tr', {},
      cell('Run', {}, el('a', { class: 'mono', href: runHref(r.id) }, r.id)),
      cell('Job', {}, r.jobName),
      cell('Status', {}, badge(r.status)),
      cell('Created', {}, time(r.createdAt)))))))
}

// signalsTable lists the signals kept for a run, not received yet.
function signalsTable(signals) {
  return el('div', { class: 'table-wrap' }, el('table', { class: 'cards', 'data-testid': 'signals' },
    el('thead', {}, el('tr', {}, ['Sent', 'Name', 'Payload'].map((c) => el('th', { scope: 'col' }, c)))),
    el('tbody', {}, signals.map((g) => el('tr', {},
      cell('Sent', {}, time(g.createdAt)),
      cell('Name', { class: 'mono' }, g.name),
      cell('Payload', {}, jsonCell(g.payload)))))))
}

function facts(kind, pairs) {
  return el('dl', { class: `facts ${kind}` }, pairs.filter(Boolean).map(([k, v, testid]) => [el('dt', {}, k), el('dd', { 'data-testid': testid }, v)]))
}

function jsonCell(value) {
  if (value === null || value === undefined) return el('span', { class: 'muted' }, '—')
  const text = JSON.stringify(value)
  if (text.length <= 60) return el('code', {}, text)
  return el('details', {}, el('summary', {}, `${text.slice(0, 40)}…`), pre(value))
}

function stepsTable(steps, run) {
  if (!steps.length) {
    return el('p', { class: 'muted', 'data-testid': 'no-steps' }, run.isTerminal && run.completedStepCount > 0
      ? 'The steps of a finished run are kept only when the engine preserves them (durably.Config.PreserveSteps).'
      : 'No steps recorded.')
  }
  return el('div', { class: 'table-wrap' }, el('table', { class: 'cards', 'data-testid': 'steps' },
    el('thead', {}, el('tr', {}, ['#', 'Step', 'Status', 'Attempt', 'Started', 'Duration', 'Output or error'].map((c) => el('th', { scope: 'col' }, c)))),
    el('tbody', {}, steps.map((s) => el('tr', { 'data-step': s.name, 'data-status': s.status },
      cell('#', {}, s.index),
      cell('Step', { class: 'mono' }, s.name),
      cell('Status', {}, el('span', { class: `badge ${s.status === 'completed' ? 'completed' : s.status === 'failed' ? 'failed' : 'cancelled'}` }, s.status)),
      cell('Attempt', {}, s.attempt ?? 1),
      cell('Started', {}, time(s.startedAt)),
      cell('Duration', {}, duration(between(s.startedAt, s.completedAt))),
      cell('Output', {}, s.error ? el('span', { class: 'log-error' }, s.error) : jsonCell(s.output)))))))
}

function attemptsTable(attempts) {
  if (!attempts.length) return el('p', { class: 'muted', 'data-testid': 'no-attempts' }, 'No failed attempts.')
  return el('table', { class: 'cards', 'data-testid': 'attempts' },
    el('thead', {}, el('tr', {}, ['Attempt', 'Outcome', 'Step', 'Error', 'At'].map((c) => el('th', { scope: 'col' }, c)))),
    el('tbody', {}, attempts.map((a) => el('tr', { 'data-outcome': a.outcome },
      cell('Attempt', {}, a.attempt),
      cell('Outcome', {}, el('span', { class: `badge ${a.outcome === 'failed' ? 'failed' : 'pending'}` }, a.outcome),
        a.worker ? el('span', { class: 'muted' }, ` on ${a.worker}`) : null),
      cell('Step', { class: 'mono' }, a.step ?? '—'),
      cell('Error', { class: 'log-error' }, a.error),
      cell('At', {}, time(a.at))))))
}

function logsTable(logs) {
  if (!logs.length) return el('p', { class: 'muted', 'data-testid': 'no-logs' }, 'No logs.')
  return el('div', { class: 'table-wrap' }, el('table', { class: 'cards', 'data-testid': 'logs' },
    el('thead', {}, el('tr', {}, ['Time', 'Level', 'Step', 'Message', 'Data'].map((c) => el('th', { scope: 'col' }, c)))),
    el('tbody', {}, logs.map((l) => el('tr', { class: `log-${l.level}` },
      cell('Time', {}, time(l.createdAt)),
      cell('Level', {}, l.level),
      cell('Step', { class: 'mono' }, l.stepName ?? '—'),
      cell('Message', {}, l.message),
      cell('Data', {}, jsonCell(l.data)))))))
}

// section returns a titled panel whose body is replaced on each reload.
function section(title, testid) {
  const body = el('div', { 'data-testid': testid })
  return { node: panel(el('h2', {}, title), body), body }
}

// say shows an action's state in a message element: pending, done,
// refused or missing; refusals are alerts.
function say(message, state, text) {
  const kind = { done: 'ok', refused: 'error', missing: 'error' }[state] ?? ''
  message.className = `message ${kind}`
  message.setAttribute('role', kind === 'error' ? 'alert' : 'status')
  message.dataset.state = state
  message.textContent = text
}

// runView builds a run page's parts, filled by showRun on each load.
function runView(id) {
  return {
    heading: el('h1', { tabindex: -1 }, 'Run ', el('span', { class: 'mono' }, id)),
    message: el('p', { class: 'message', 'data-testid': 'action-result' }),
    buttons: {
      cancel: el('button', { type: 'button', 'data-testid': 'cancel', disabled: true }, 'Cancel'),
      retrigger: el('button', { type: 'button', 'data-testid': 'retrigger', disabled: true }, 'Retrigger'),
      delete: el('button', { type: 'button', class: 'danger', 'data-testid': 'delete', disabled: true }, 'Delete'),
    },
    summary: section('Summary', 'summary'),
    input: section('Input', 'input'),
    output: section('Output', 'output-section'),
    attempts: section('Attempts', 'attempts-section'),
    steps: section('Steps', 'steps-section'),
    logs: section('Logs', 'logs-section'),
    // Shown only when there is something to show (issue 22).
    children: section('Children', 'children-section'),
    signals: section('Signals waiting to be received', 'signals-section'),
  }
}

function summaryOf(run, stepRows) {
  const wait = waitOf(run, stepRows)
  return [
    wait ? el('p', { class: 'wait', 'data-testid': 'wait' }, wait.text) : null,
    facts('wide', [
      ['Job', el('a', { href: `jobs#job-${encodeURIComponent(run.jobName)}` }, run.jobName), 'job'],
      ['Status', badge(run.status)],
      ['Progress', progressOf(run) ?? '—'],
      ['Created', time(run.createdAt)],
      ['Started', time(run.startedAt)],
      [run.status === 'cancelled' ? 'Cancelled' : 'Completed', time(run.completedAt)],
      ['Duration', duration(between(run.startedAt, run.completedAt)), 'duration'],
      run.status === 'pending' && run.runAt ? ['Run at', time(run.runAt)] : null,
      ['Priority', run.priority ?? 0],
      ['Attempt', (run.attempt ?? 0) + 1, 'attempt'],
      run.crashes > 0 ? ['Crashes', run.crashes, 'crashes'] : null,
      ['Labels', labelChips(run.labels).length ? labelChips(run.labels) : '—', 'labels'],
      run.parentRunId ? ['Parent', el('a', { class: 'mono', href: runHref(run.parentRunId) }, run.parentRunId), 'parent'] : null,
    ]),
  ]
}

// showRun fills the page from the three reads, each of which a hook may
// have refused on its own.
function showRun(v, run, steps, logs) {
  const stepRows = steps.status === 'fulfilled' ? steps.value : null
  fill(v.heading, 'Run ', el('span', { class: 'mono' }, run.id), ' ', badge(run.status))
  v.buttons.cancel.disabled = !run.isActive
  v.buttons.retrigger.disabled = !run.isTerminal
  v.buttons.delete.disabled = !run.isTerminal
  fill(v.summary.body, summaryOf(run, stepRows))
  fill(v.input.body, pre(run.input, 'input-json'))
  fill(v.output.body,
    run.error ? el('pre', { class: 'log-error', 'data-testid': 'error' }, run.error) : null,
    run.output !== null && run.output !== undefined ? pre(run.output, 'output')
      : (run.error ? null : el('p', { class: 'muted' }, run.isTerminal ? 'No output.' : 'Not finished yet.')))
  const refused = (what, reason) => el('p', { class: 'message error', role: 'alert', 'data-state': 'refused' }, `The ${what} cannot be shown: ${reason.shown}`)
  fill(v.attempts.body, Array.isArray(run.attempts) || stepRows ? attemptsTable(attemptsOf(run, stepRows)) : refused('attempts', steps.reason))
  fill(v.steps.body, stepRows ? stepsTable(stepRows, run) : refused('steps', steps.reason))
  fill(v.logs.body, logs.status === 'fulfilled' ? logsTable(logs.value) : refused('logs', logs.reason))
}

// showFamily shows the run's children and the signals kept for it, each
// section only when the server sent some (issue 22; a server without these
// routes refuses them, and they stay hidden).
function showFamily(v, children, signals) {
  for (const [part, read, table] of [[v.children, children, familyTable], [v.signals, signals, signalsTable]]) {
    const rows = read.status === 'fulfilled' && Array.isArray(read.value) ? read.value : []
    part.node.hidden = rows.length === 0
    fill(part.body, rows.length ? table(rows) : null)
  }
}

// wireActions sends the buttons' requests; the server's hooks decide, and
// a refusal is shown with its status and message.
function wireActions(v, id, reload) {
  const act = async (name, method, path, done) => {
    say(v.message, 'pending', `${name}…`)
    try {
      const result = await call(method, path, { runId: id })
      say(v.message, 'done', `${name}: done.`)
      done(result)
    } catch (err) {
      say(v.message, 'refused', `${name} refused: ${err.shown}`)
    }
  }
  v.buttons.cancel.addEventListener('click', () => {
    if (confirm(`Cancel run ${id}?`)) act('Cancel', 'POST', 'cancel', () => { v.message.textContent = 'Cancelled.'; reload() })
  })
  v.buttons.retrigger.addEventListener('click', () => act('Retrigger', 'POST', 'retrigger', (res) => {
    navigate(runHref(res.runId), { kind: 'ok', text: `Retriggered from run ${id}.` })
  }))
  v.buttons.delete.addEventListener('click', () => {
    if (confirm(`Delete run ${id} with its steps and logs?`)) {
      act('Delete', 'DELETE', 'run', () => navigate('./', { kind: 'ok', text: `Deleted run ${id}.` }))
    }
  })
}

async function runPage(page, { id }, shown) {
  document.title = `Run ${id} · ${appTitle}`
  const v = runView(id)
  append(main, v.heading, flashMessage(shown),
    el('div', { class: 'actions', role: 'group', 'aria-label': 'Actions' }, Object.values(v.buttons)), v.message)
  let run = null
  const load = async () => {
    const [r, steps, logs, children, signals] = await Promise.allSettled([
      call('GET', 'run', { runId: id }), call('GET', 'steps', { runId: id }), call('GET', 'logs', { runId: id }),
      call('GET', 'children', { runId: id }), run?.isTerminal ? Promise.resolve([]) : call('GET', 'signals', { runId: id })])
    if (page.left) return
    if (r.status === 'rejected') {
      run = null
      main.querySelectorAll('section.panel, .grid2').forEach((n) => n.remove())
      Object.values(v.buttons).forEach((b) => { b.disabled = true })
      say(v.message, r.reason.status === 404 ? 'missing' : 'refused', `This run cannot be shown: ${r.reason.shown}`)
      return
    }
    if (!run) append(main, v.summary.node, el('div', { class: 'grid2' }, v.input.node, v.output.node), v.children.node, v.signals.node, v.attempts.node, v.steps.node, v.logs.node)
    run = r.value
    showRun(v, run, steps, logs)
    showFamily(v, children, signals)
  }
  await load()
  if (!run || page.left) return
  const reload = coalesce(page, load, 200)
  wireActions(v, id, reload)
  if (run.isTerminal) return
  // Live: the run's own stream while it may still change; a slow reload
  // besides, for the changes no event announces (a deferral's commit, a
  // lease that expired in a process that died).
  const stream = follow(page, 'subscribe', { runId: id }, (event) => {
    if (event.runId !== id) return
    if (CLOSING_EVENTS.has(event.type)) { stream.close(); setLive('') }
    reload()
  })
  const timer = setInterval(() => { if (run && !run.isTerminal) reload() }, 5000)
  page.onLeave(() => clearInterval(timer))
}

// ---------------------------------------------------------------- jobs

// example fills a JSON Schema's required members with values of their
// type: a starting point for the trigger form, which the server validates.
function example(schema) {
  if (!schema || typeof schema !== 'object') return null
  if (Array.isArray(schema.enum)) return schema.enum[0]
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type
  switch (type) {
    case 'object': {
      const out = {}
      for (const key of schema.required ?? []) out[key] = example(schema.properties?.[key])
      return out
    }
    case 'array': return []
    case 'string': return ''
    case 'integer': case 'number': return schema.minimum ?? 0
    case 'boolean': return false
    default: return null
  }
}

function retryText(retry) {
  if (!retry) return 'none'
  const parts = [`${retry.maxAttempts} attempts in all`, `${retry.backoff} backoff from ${duration(retry.initialMs)}`]
  if (retry.maxMs) parts.push(`at most ${duration(retry.maxMs)}`)
  if (retry.jitter) parts.push(`jitter ${Math.round(retry.jitter * 100)} %`)
  return parts.join(', ')
}

function schedulesTable(schedules) {
  return el('table', { class: 'cards', 'data-testid': 'schedules' },
    el('thead', {}, el('tr', {}, ['Schedule', 'Cron', 'Time zone', 'Next tick', 'Last fired'].map((c) => el('th', { scope: 'col' }, c)))),
    el('tbody', {}, schedules.map((s) => el('tr', {},
      cell('Schedule', { class: 'mono' }, s.name),
      cell('Cron', { class: 'mono nowrap' }, s.cron),
      cell('Time zone', {}, s.timeZone || 'UTC'),
      cell('Next tick', { 'data-testid': 'next-tick' }, s.next ? [time(s.next), ' ', el('span', { class: 'muted' }, relative(s.next))] : '—'),
      cell('Last fired', {}, time(s.lastFired))))))
}

function triggerForm(job) {
  const inputId = `input-${job.name}`
  const labelsId = `labels-${job.name}`
  const message = el('p', { class: 'message', 'data-testid': 'trigger-result' })
  const form = el('form', { class: 'stack', 'aria-label': `Trigger ${job.name}`, 'data-testid': 'trigger-form' },
    el('label', { for: inputId }, 'Input (JSON; the server checks it against the input schema)'),
    el('textarea', { id: inputId, name: 'input', spellcheck: 'false', 'data-testid': 'trigger-input' }, JSON.stringify(example(job.input), null, 2)),
    el('label', { for: labelsId }, 'Labels (optional JSON object)'),
    el('textarea', { id: labelsId, name: 'labels', spellcheck: 'false', class: 'short', 'data-testid': 'trigger-labels' }),
    el('div', { class: 'actions' }, el('button', { class: 'primary', type: 'submit', 'data-testid': 'trigger' }, `Trigger ${job.name}`)),
    message)
  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    const fail = (text) => say(message, 'refused', text)
    const body = { jobName: job.name }
    const data = new FormData(form)
    try { body.input = JSON.parse(data.get('input') || 'null') } catch (err) { return fail(`The input is not JSON: ${err.message}`) }
    const labels = data.get('labels').trim()
    if (labels) {
      try { body.labels = JSON.parse(labels) } catch (err) { return fail(`The labels are not JSON: ${err.message}`) }
    }
    try {
      const res = await call('POST', 'trigger', {}, body)
      navigate(runHref(res.runId), { kind: 'ok', text: `Triggered ${job.name} (${res.disposition}).` })
    } catch (err) {
      fail(`Not triggered: ${err.shown}`)
    }
  })
  return form
}

function jobPanel(job) {
  return el('section', { class: 'panel job', id: `job-${job.name}`, 'data-job': job.name },
    el('h2', {}, job.name),
    el('div', { class: 'grid2' },
      el('div', { class: 'stack' },
        job.description ? el('p', {}, job.description) : null,
        facts('', [
          ['Priority', job.priority ?? 0],
          ['At most running', job.maxRunning ? String(job.maxRunning) : 'no limit', 'max-running'],
          ['At most running per tenant', job.maxRunningPerTenant ? String(job.maxRunningPerTenant) : 'no limit', 'max-running-per-tenant'],
          ['Run timeout', job.timeoutMs ? duration(job.timeoutMs) : 'none', 'timeout'],
          ['Step timeout', job.stepTimeoutMs ? duration(job.stepTimeoutMs) : 'none', 'step-timeout'],
          ['Retries', retryText(job.retry), 'retry'],
        ]),
        job.schedules?.length ? el('div', {}, el('h3', {}, 'Schedules'), schedulesTable(job.schedules)) : null,
        el('details', {}, el('summary', {}, 'Input schema'), pre(job.input)),
        el('details', {}, el('summary', {}, 'Output schema'), pre(job.output))),
      el('div', {}, el('h3', {}, 'Trigger'), triggerForm(job))))
}

async function jobsPage(page, _route, shown) {
  document.title = `Jobs · ${appTitle}`
  append(main, el('h1', { tabindex: -1 }, 'Jobs'), flashMessage(shown))
  let jobs
  try {
    jobs = await call('GET', 'jobs')
  } catch (err) {
    if (page.left) return
    append(main, el('p', { class: 'notice error', role: 'alert', 'data-testid': 'jobs-error' }, err.status === 404
      ? 'This handler serves no job list: set durablyhttp.Options.Jobs (generated handlers do).'
      : `The jobs cannot be shown: ${err.shown}`))
    return
  }
  if (page.left) return
  append(main, el('nav', { class: 'panel', 'aria-label': 'Jobs' }, jobs.map((j) => el('a', { class: 'chip', href: `jobs#job-${encodeURIComponent(j.name)}` }, j.name))),
    jobs.map(jobPanel))
  if (location.hash) document.getElementById(decodeURIComponent(location.hash.slice(1)))?.scrollIntoView()
}

async function missingPage() {
  document.title = `Not found · ${appTitle}`
  append(main, el('h1', { tabindex: -1 }, 'Not found'), el('p', {}, el('a', { href: './' }, 'Back to the runs')))
}

render()
