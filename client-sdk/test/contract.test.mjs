// The SDK's wire types against the server's own OpenAPI document (GET /api/v1/openapi.json,
// generated from server/src/api/dto.rs and error.rs). Fails when either side adds, removes
// or renames an error code, a field of a modelled schema, or an enum spelling.
import test from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { CLOSE_CODES, ERROR_CODES, WIRE_SCHEMAS, WIRE_ENUMS } from '../dist/index.js'
import { startServer } from './support.mjs'

const server = await startServer()
test.after(() => server.stop())
const openapi = await (await fetch(`${server.http}/api/v1/openapi.json`)).json()
const schemas = openapi.components.schemas

/** A schema's property names, following `$ref` and `allOf` (serde `flatten`). */
function propertyNames (schema) {
  if (schema.$ref) return propertyNames(resolve(schema.$ref))
  const names = Object.keys(schema.properties ?? {})
  for (const part of schema.allOf ?? []) names.push(...propertyNames(part))
  return names
}

function resolve (ref) {
  const name = ref.replace('#/components/schemas/', '')
  assert.ok(schemas[name], `${ref} resolves`)
  return schemas[name]
}

const sorted = list => [...list].sort()

test('ERROR_CODES is exactly the ErrorCode enum of the server', () => {
  const server = schemas.ErrorCode?.enum
  assert.ok(Array.isArray(server), 'the OpenAPI document has an ErrorCode enum')
  const missing = server.filter(code => !ERROR_CODES.includes(code))
  const stale = ERROR_CODES.filter(code => !server.includes(code))
  assert.deepEqual({ missing, stale }, { missing: [], stale: [] }, 'add/remove codes in src/errors.ts')
  assert.equal(new Set(ERROR_CODES).size, ERROR_CODES.length, 'no duplicates')
})

test('CLOSE_CODES are documented close codes, in the range of their kind', () => {
  // docs/protocol.md, "Close codes": one table row per code; 44xx are final, 45xx retryable.
  const protocol = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8')
  const documented = new Set([...protocol.matchAll(/^\| (\d{4}) \|/gm)].map(m => Number(m[1])))
  for (const [name, code] of Object.entries(CLOSE_CODES)) {
    assert.ok(documented.has(code), `${name} (${code}) has a row in docs/protocol.md`)
  }
  assert.ok(CLOSE_CODES.draining >= 4500 && CLOSE_CODES.draining < 4600, 'draining is retryable (45xx)')
  for (const name of ['unauthenticated', 'forbidden', 'sessionEnded']) {
    assert.ok(CLOSE_CODES[name] >= 4400 && CLOSE_CODES[name] < 4500, `${name} is in 44xx`)
  }
})

for (const [sdkType, { schema, properties }] of Object.entries(WIRE_SCHEMAS)) {
  test(`${sdkType} declares exactly the properties of ${schema}`, () => {
    assert.ok(schemas[schema], `the OpenAPI document has a ${schema} schema`)
    assert.deepEqual(sorted(properties), sorted(propertyNames(schemas[schema])),
      `update ${sdkType} in src/types.ts (and its WIRE_SCHEMAS entry)`)
  })
}

for (const [name, values] of Object.entries(WIRE_ENUMS)) {
  test(`enum ${name} has the server's spellings`, () => {
    assert.ok(Array.isArray(schemas[name]?.enum), `the OpenAPI document has an enum ${name}`)
    assert.deepEqual(sorted(values), sorted(schemas[name].enum))
  })
}

test('every response body schema of the API is modelled by the SDK', () => {
  // Schemas referenced from a 2xx response (directly or as array items) must be in the table,
  // so a new endpoint's body cannot go unchecked.
  const modelled = new Set(Object.values(WIRE_SCHEMAS).map(entry => entry.schema))
  const unmodelled = new Set()
  for (const operations of Object.values(openapi.paths)) {
    for (const operation of Object.values(operations)) {
      for (const [status, response] of Object.entries(operation.responses ?? {})) {
        if (!status.startsWith('2')) continue
        for (const media of Object.values(response.content ?? {})) {
          const ref = media.schema?.$ref ?? media.schema?.items?.$ref
          if (ref) {
            const name = ref.replace('#/components/schemas/', '')
            if (!modelled.has(name)) unmodelled.add(name)
          }
        }
      }
    }
  }
  assert.deepEqual([...unmodelled], [])
})
