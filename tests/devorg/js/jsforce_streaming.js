// jsforce 3's Faye streaming client with its replay extension against the local org, as the
// jsforce docs show it (Streaming#createClient with StreamingExtension.Replay and AuthFailure).
// Reads {instanceUrl, accessToken, version, channel, retained, liveEmail, expireUrl} as JSON from
// argv[2]; prints one JSON object. The org's CA comes from NODE_EXTRA_CA_CERTS.
const jsforce = require('jsforce');
const { StreamingExtension } = require('jsforce/api/streaming');

const TIMEOUT_MS = 20000;

// Subscribe with the replay extension from `replayFrom`; resolve with the first `count` events.
// `afterSubscribe` runs once the subscription is confirmed (to change records while listening).
function receive(conn, channel, replayFrom, count, afterSubscribe) {
  return new Promise((resolve, reject) => {
    const failures = [];
    const authFailure = new StreamingExtension.AuthFailure((message) => failures.push(message));
    const replay = new StreamingExtension.Replay(channel, replayFrom);
    const client = conn.streaming.createClient([authFailure, replay]);
    const events = [];
    const timer = setTimeout(() => {
      client.disconnect();
      reject(new Error(`timed out with ${events.length} of ${count} events; failures ${JSON.stringify(failures)}`));
    }, TIMEOUT_MS);
    const subscription = client.subscribe(channel, (message) => {
      events.push(message);
      if (events.length === count) {
        clearTimeout(timer);
        subscription.cancel();
        client.disconnect();
        resolve(events);
      }
    });
    subscription.then(() => (afterSubscribe ? afterSubscribe() : null)).catch((err) => {
      clearTimeout(timer);
      client.disconnect();
      reject(err);
    });
  });
}

function summary(events) {
  return events.map((e) => ({
    type: e.event.type,
    replayId: e.event.replayId,
    createdDate: e.event.createdDate,
    email: e.sobject.Email,
    id: e.sobject.Id,
  }));
}

async function main() {
  const input = JSON.parse(process.argv[2]);
  const conn = new jsforce.Connection({
    instanceUrl: input.instanceUrl,
    accessToken: input.accessToken,
    version: input.version,
  });
  const out = {};
  // -2: every retained event (the ones created before), then a change made while subscribed
  const all = await receive(conn, input.channel, -2, input.retained + 1, () =>
    conn.sobject('Lead').create({ LastName: 'Live', Company: 'Co', Email: input.liveEmail }),
  );
  out.all = summary(all);
  // resume after the first event: the rest arrive again, nothing before it
  const resumed = await receive(conn, input.channel, all[0].event.replayId, all.length - 1);
  out.resumed = summary(resumed);
  // -1: only new events; the same record updated is an "updated" event
  const fresh = await receive(conn, input.channel, -1, 1, () =>
    conn.sobject('Lead').update({ Id: all[all.length - 1].sobject.Id, Email: `new-${input.liveEmail}` }),
  );
  out.fresh = summary(fresh);
  // the session ends while subscribed: the server answers 401::Authentication invalid with
  // advice reconnect "none", which jsforce's AuthFailure extension hands to its callback
  out.authFailure = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no authentication failure reported')), TIMEOUT_MS);
    const client = conn.streaming.createClient([
      new StreamingExtension.AuthFailure((message) => {
        clearTimeout(timer);
        client.disconnect();
        resolve({ channel: message.channel, error: message.error, advice: message.advice });
      }),
    ]);
    client.subscribe(input.channel, () => {}).then(() => fetch(input.expireUrl, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user: 'sales' }),
    })).catch(reject);
  });
  process.stdout.write(JSON.stringify(out));
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
