// expect: TS2561
import { createDurably } from '@coji/durably-react'
import type { Durably } from '../../../examples/tenants/tenantjobs/durably_gen.ts'

const durably = createDurably<Durably>({ api: '/api/durably' })
void durably.echo.useJob().trigger({ message: 'hi', mesage: 'typo' })
