// The TypeScript that README.md and docs/declaration.md show: their blocks
// are excerpts of this file (TestDocGoBlocks), which must type-check under
// --strict (typecheck.mjs). That a job not declared does not compile is
// ../fail/unknown_job.ts.
import { createDurably } from '@coji/durably-react'
import type { Durably } from '../../../examples/tenants/tenantjobs/durably_gen.ts'

export const durably = createDurably<Durably>({ api: '/api/durably' })

durably.steps.useJob().trigger({ count: 5, delayMs: 100 }) // StepsInput
durably.steps.useJob().output?.sum // StepsOutput | null
