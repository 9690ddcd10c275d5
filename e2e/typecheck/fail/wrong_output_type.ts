// expect: TS2322
import { createDurably } from '@coji/durably-react'
import type { Durably } from '../../../examples/tenants/tenantjobs/durably_gen.ts'

const durably = createDurably<Durably>({ api: '/api/durably' })
export const sum: string | undefined = durably.steps.useJob().output?.sum
