// The reference CometD JavaScript client (npm cometd + cometd-nodejs-client) against the local
// org, set up as the Streaming API Developer Guide's CometD examples are: an OAuth bearer header,
// the replay extension of the guide's durable-streaming example, and subscriptions made in the
// /meta/handshake listener so that a re-handshake subscribes again from the last replayId seen.
// Reads {instanceUrl, accessToken, version, channel, controlUrl, emails} as JSON from argv[2];
// prints one JSON object. The org's CA comes from NODE_EXTRA_CA_CERTS.
import { createRequire } from 'node:module';
import { adapt } from 'cometd-nodejs-client';
import { CometD } from 'cometd';

const require = createRequire(import.meta.url);
const jsforce = require('jsforce');

adapt();

const TIMEOUT_MS = 20000;

// The guide's cometdReplayExtension: remembers the last replayId per channel and sends it in
// ext.replay on every /meta/subscribe once the server's handshake says it supports replay.
class ReplayExtension {
  constructor(replayFrom) {
    this.replay = { ...replayFrom };
    this.enabled = false;
    this.subscribes = [];
  }

  incoming(message) {
    if (message.channel === '/meta/handshake') {
      this.enabled = Boolean(message.ext && message.ext.replay === true);
    } else if (message.channel in this.replay && message.data?.event?.replayId) {
      this.replay[message.channel] = message.data.event.replayId;
    }
    return message;
  }

  outgoing(message) {
    if (message.channel === '/meta/subscribe' && this.enabled) {
      message.ext = { ...(message.ext || {}), replay: { [message.subscription]: this.replay[message.subscription] } };
      this.subscribes.push(message.ext.replay);
    }
    return message;
  }
}

function waitFor(condition, what) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const tick = () => {
      if (condition()) return resolve();
      if (Date.now() - started > TIMEOUT_MS) return reject(new Error(`timed out waiting for ${what}`));
      return setTimeout(tick, 25);
    };
    tick();
  });
}

async function main() {
  const input = JSON.parse(process.argv[2]);
  const conn = new jsforce.Connection({
    instanceUrl: input.instanceUrl,
    accessToken: input.accessToken,
    version: input.version,
  });
  const cometd = new CometD();
  const replay = new ReplayExtension({ [input.channel]: -2 });
  cometd.registerExtension('replay', replay);
  cometd.configure({
    url: `${input.instanceUrl}/cometd/${input.version}`,
    requestHeaders: { Authorization: `Bearer ${input.accessToken}` },
    appendMessageTypeToURL: false,
  });
  const events = [];
  const handshakes = [];
  const subscribed = [];
  const connectFailures = [];
  cometd.addListener('/meta/connect', (m) => {
    if (!m.successful) connectFailures.push(m.error);
  });
  cometd.addListener('/meta/handshake', (m) => {
    handshakes.push({ successful: m.successful, clientId: m.clientId, error: m.error });
    if (m.successful) {
      cometd.subscribe(input.channel, (event) => events.push(event.data), (reply) => subscribed.push(reply.successful));
    }
  });
  cometd.handshake();

  await waitFor(() => events.length >= input.retained, `${input.retained} retained events`);
  await conn.sobject('Lead').create({ LastName: 'Live', Company: 'Co', Email: input.emails.live });
  await waitFor(() => events.length >= input.retained + 1, 'the live event');

  // the server forgets every client (a failover) and a record changes meanwhile
  const dropped = await fetch(input.controlUrl, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ drop_clients: true }),
  });
  if (!dropped.ok) throw new Error(`drop_clients: ${dropped.status}`);
  await conn.sobject('Lead').create({ LastName: 'Failover', Company: 'Co', Email: input.emails.failover });
  await waitFor(() => handshakes.length >= 2 && events.length >= input.retained + 2, 'the re-handshake');

  await new Promise((resolve) => cometd.disconnect(resolve));
  process.stdout.write(JSON.stringify({
    events: events.map((e) => ({ type: e.event.type, replayId: e.event.replayId, email: e.sobject.Email })),
    handshakes,
    subscribed,
    subscribes: replay.subscribes,
    connectFailures,
  }));
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
