// What the generated module makes of the React client's types: each must
// type-check under --strict (typecheck.mjs). The files in ../fail must not.
import { createDurably } from '@coji/durably-react'
import type { Durably, EchoOutput, Labels, StepsInput, StepsOutput } from '../../../examples/tenants/tenantjobs/durably_gen.ts'

const durably = createDurably<Durably>({ api: '/api/durably' })

// Exact types, both ways: T and U are each assignable to the other.
type Equal<T, U> = [T] extends [U] ? ([U] extends [T] ? true : false) : false
function assert<T extends true>(): T | void {}

type TriggerInput<K extends keyof Durably['jobs']> = Parameters<ReturnType<(typeof durably)[K]['useJob']>['trigger']>[0]
type Output<K extends keyof Durably['jobs']> = ReturnType<(typeof durably)[K]['useJob']>['output']

assert<Equal<TriggerInput<'steps'>, StepsInput>>()
assert<Equal<Output<'steps'>, StepsOutput | null>>()
assert<Equal<Output<'echo'>, EchoOutput | null>>()
// A job without output resolves to the client's untyped record.
assert<Equal<Output<'fail'>, Record<string, unknown> | null>>()

export function use(): void {
  const steps = durably.steps.useJob()
  void steps.trigger({ count: 3, delayMs: 0 })
  void durably.echo.useJob().trigger({ message: 'hi' })
  const labels: Labels = { organizationId: 'org-a', env: 'staging' }
  durably.useRuns({ jobName: 'steps', labels })
}
