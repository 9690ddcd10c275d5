// expect: TS2339
import { createDurably } from '@coji/durably-react'
import type { Durably } from '../../../examples/tenants/tenantjobs/durably_gen.ts'

const durably = createDurably<Durably>({ api: '/api/durably' })
durably.nosuchjob.useJob()
