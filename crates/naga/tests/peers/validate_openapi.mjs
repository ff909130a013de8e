// Validates an OpenAPI document (a file) against the specification's JSON
// Schema with @seriousme/openapi-schema-validator (installed under
// $NAGA_PEERS by .ci/run). Exit 0 when valid; the errors otherwise.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const lib = join(process.env.NAGA_PEERS, "@seriousme/openapi-schema-validator/index.js");
const { Validator } = await import(pathToFileURL(lib).href);
const doc = JSON.parse(readFileSync(process.argv[2], "utf8"));
const validator = new Validator();
const result = await validator.validate(doc);
if (!result.valid) {
  console.log(JSON.stringify(result.errors, null, 2));
  process.exit(1);
}
console.log(`valid OpenAPI ${validator.version}`);
