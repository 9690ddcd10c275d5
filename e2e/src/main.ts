// A page built only on the unmodified @coji/durably-react client hooks,
// talking to the Go tenants server through the dev server's proxy. Plain
// createElement, no JSX. The client is typed by the module durably-gen
// writes from examples/tenants/durably.yaml: every job's trigger input and
// output are the declared ones (typecheck.mjs checks it with tsc --strict).
import { createDurably } from '@coji/durably-react'
import { createElement as h, useState } from 'react'
import { createRoot } from 'react-dom/client'
import type { Durably, StepsOutput } from '../../examples/tenants/tenantjobs/durably_gen.ts'

export const durably = createDurably<Durably>({ api: '/api/durably' })

function StepsJob() {
  const job = durably.steps.useJob()
  const [count, setCount] = useState(5)
  const p = job.progress
  return h('section', { className: 'card' },
    h('h2', null, 'Job "steps"'),
    h('label', null, 'steps ',
      h('input', { 'data-testid': 'count', type: 'number', value: count, onChange: (e: { target: { value: string } }) => setCount(Number(e.target.value)) })),
    ' ',
    h('button', {
      'data-testid': 'run',
      disabled: job.isLeased || job.isPending,
      onClick: () => job.trigger({ count, delayMs: 150 }),
    }, 'Run'),
    h('p', null, 'status: ', h('strong', { 'data-testid': 'status' }, job.status ?? 'idle')),
    p && h('div', null,
      h('progress', { max: p.total ?? 1, value: p.current }),
      h('span', { 'data-testid': 'progress' }, `${p.current}/${p.total ?? '?'} ${p.message ?? ''}`)),
    job.output && h('p', null, 'output: ', h('code', { 'data-testid': 'output' }, JSON.stringify(job.output satisfies StepsOutput))),
    job.error && h('p', { 'data-testid': 'error' }, job.error),
    h('p', null, 'logs: ', h('span', { 'data-testid': 'logs' }, String(job.logs.length))),
  )
}

function RunList() {
  const { runs, isLoading, error } = durably.useRuns({ jobName: 'steps', pageSize: 5 })
  const actions = durably.useRunActions()
  const [retriggered, setRetriggered] = useState<string | null>(null)
  const retrigger = async (id: string) => {
    const newId = await actions.retrigger(id)
    const run = await actions.getRun(newId)
    setRetriggered(`${newId} ${run?.status ?? 'missing'}`)
  }
  return h('section', { className: 'card' },
    h('h2', null, 'Runs'),
    error && h('p', null, error),
    retriggered && h('p', null, 'retriggered: ', h('code', { 'data-testid': 'retriggered' }, retriggered)),
    isLoading && runs.length === 0 ? h('p', null, 'loading…') :
      h('table', { 'data-testid': 'runs' },
        h('thead', null, h('tr', null, h('th', null, 'id'), h('th', null, 'status'), h('th', null, 'progress'))),
        h('tbody', null, runs.map((r) => h('tr', { key: r.id, 'data-status': r.status },
          h('td', null, r.id.slice(-8)),
          h('td', null, r.status),
          h('td', null, r.progress ? `${r.progress.current}/${r.progress.total}` : ''),
          h('td', null, r.status === 'completed' &&
            h('button', { 'data-testid': 'retrigger', onClick: () => retrigger(r.id).catch((e: Error) => setRetriggered(`error ${e.message}`)) }, 'retrigger'))))))
  )
}

createRoot(document.getElementById('root')!).render(
  h('main', null, h('h1', null, 'durably-go'), h(StepsJob), h(RunList)),
)
