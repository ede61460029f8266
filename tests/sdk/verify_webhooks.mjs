// Checks webhooks the way a Nango customer's backend does, with an unmodified @nangohq/node release:
// `nango.verifyWebhookSignature(req.headers['x-nango-signature'], req.body)` on the parsed JSON body.
// tests/e2e/test_webhooks_node_sdk.py runs it; this script only verifies and reports.
//
// usage: node verify_webhooks.mjs <sdk package>   (nango-node-0408 or nango-node-04211, aliases in package.json)
// stdin: a JSON array of {"secretKey", "signature", "body"} (body: the raw bytes received, as text)
// stdout: a JSON array of booleans, one per webhook

const [, , sdkPackage] = process.argv;
const { Nango } = await import(sdkPackage);

let input = '';
for await (const chunk of process.stdin) input += chunk;
const results = JSON.parse(input).map(({ secretKey, signature, body }) =>
    new Nango({ secretKey }).verifyWebhookSignature(signature, JSON.parse(body))
);
process.stdout.write(JSON.stringify(results) + '\n');
