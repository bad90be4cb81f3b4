// A caller written against the official Dapr JS SDK (@dapr/dapr) over gRPC, and
// nothing of tether.
//
// Usage: node caller.js GRPC_PORT APP_ID STEP [STEP ...]
//
// A STEP is "metadata" (client.metadata.get()), or VERB:METHOD, e.g. "POST:neworder"
// (client.invoker.invoke(APP_ID, METHOD, HttpMethod.VERB, BODY); GET sends no body
// argument, so the SDK's default). The token, if any, comes from DAPR_API_TOKEN as the
// SDK reads it. Prints one JSON document on stdout: a list with, per step, what the
// SDK returned or the fields of the error it raised (the status details as base64,
// for the test to decode).
"use strict";

const { DaprClient, CommunicationProtocolEnum, HttpMethod, LogLevel } = require("@dapr/dapr");

const BODY = { order: 42, note: "from the JS SDK" };

function describeError(step, err) {
  const fields = { step, raised: err && err.name, message: String(err && err.message) };
  if (err && typeof err.code === "number") {
    fields.code = err.code; // @connectrpc/connect's Code: the gRPC status number
    fields.rawMessage = err.rawMessage;
    fields.metadata = Array.from(err.metadata || [], ([key, value]) => [key, value]);
    fields.details = (err.details || []).map((d) => ({
      type: d.type,
      value: Buffer.from(d.value || []).toString("base64"),
    }));
  }
  return fields;
}

async function runStep(client, appId, step) {
  try {
    if (step === "metadata") {
      const metadata = await client.metadata.get();
      return { step, id: metadata.id };
    }
    const [verb, method] = step.split(":");
    const result =
      verb === "GET"
        ? await client.invoker.invoke(appId, method, HttpMethod.GET)
        : await client.invoker.invoke(appId, method, HttpMethod[verb], BODY);
    return { step, result };
  } catch (err) {
    return describeError(step, err);
  }
}

async function main() {
  const [port, appId, ...steps] = process.argv.slice(2);
  const client = new DaprClient({
    daprHost: "127.0.0.1",
    daprPort: port,
    communicationProtocol: CommunicationProtocolEnum.GRPC,
    logger: { level: LogLevel.Error }, // stdout carries the JSON document only
  });
  await client.start(); // waits for the sidecar: GetMetadata until it answers
  const results = [];
  for (const step of steps) {
    results.push(await runStep(client, appId, step));
  }
  await client.stop();
  process.stdout.write(JSON.stringify(results) + "\n");
}

main().catch((err) => {
  process.stderr.write(`caller failed: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
