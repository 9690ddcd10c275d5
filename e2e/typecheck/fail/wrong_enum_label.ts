// expect: TS2322
import type { Labels } from '../../../examples/tenants/tenantjobs/durably_gen.ts'

export const labels: Labels = { organizationId: 'org-a', env: 'prod' }
