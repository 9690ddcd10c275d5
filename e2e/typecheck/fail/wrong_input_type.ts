// expect: TS2322
import { createDurably } from '@coji/durably-react'
import type { Durably } from '../../../examples/tenants/tenantjobs/durably_gen.ts'

const durably = createDurably<Durably>({ api: '/api/durably' })
void durably.steps.useJob().trigger({ count: 'five', delayMs: 0 })
