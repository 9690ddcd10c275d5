// Type-checks, with tsc --strict against the installed @coji/durably-react,
// the page (src/) and the probes of the TypeScript module durably-gen
// writes for examples/tenants (typecheck/): the page and typecheck/pass
// must compile; each file in typecheck/fail must not, with the error code
// its first line names (// expect: TS2322). Exits 1, saying why, otherwise.
//
//   npm run typecheck
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const tsc = join(here, 'node_modules', '.bin', 'tsc')
const work = mkdtempSync(join(tmpdir(), 'durably-tsc-'))
const problems = []

// tsc runs on a project of the given files with this directory's options.
function check(name, files) {
  const config = join(work, `${name.replace(/\W/g, '_')}.json`)
  writeFileSync(config, JSON.stringify({ extends: join(here, 'tsconfig.json'), include: [], files: files.map((f) => join(here, f)) }))
  const res = spawnSync(tsc, ['-p', config], { encoding: 'utf8' })
  if (res.error) throw res.error
  return { ok: res.status === 0, out: `${res.stdout}${res.stderr}`.trim() }
}

try {
  const all = check('project', ['src/main.ts', ...readdirSync(join(here, 'typecheck', 'pass')).map((f) => `typecheck/pass/${f}`)])
  if (!all.ok) problems.push(`the page and typecheck/pass do not type-check:\n${all.out}`)
  const probes = readdirSync(join(here, 'typecheck', 'fail')).filter((f) => f.endsWith('.ts'))
  if (probes.length === 0) problems.push('typecheck/fail has no probes')
  for (const f of probes) {
    const file = `typecheck/fail/${f}`
    const want = /^\/\/ expect: (TS\d+)/.exec(readFileSync(join(here, file), 'utf8'))?.[1]
    if (!want) {
      problems.push(`${file}: its first line does not name the expected error (// expect: TS2322)`)
      continue
    }
    const res = check(f, [file])
    if (res.ok) problems.push(`${file} type-checks; it must fail with ${want}`)
    else if (!res.out.includes(`error ${want}`)) problems.push(`${file} fails without ${want}:\n${res.out}`)
  }
  if (problems.length) {
    console.error(`typecheck: FAILED\n${problems.join('\n')}`)
    process.exitCode = 1
  } else {
    console.log(`typecheck: the page and typecheck/pass type-check; ${probes.length} probes fail as they must`)
  }
} finally {
  rmSync(work, { recursive: true, force: true })
}
