// jsforce 3 against the local org, as an integration would use it. Reads
// {instanceUrl, accessToken, version, leadIds} as JSON from argv[2]; prints one JSON object.
// The org's CA comes from NODE_EXTRA_CA_CERTS.
const jsforce = require('jsforce');

async function main() {
  const input = JSON.parse(process.argv[2]);
  const conn = new jsforce.Connection({
    instanceUrl: input.instanceUrl,
    accessToken: input.accessToken,
    version: input.version,
  });
  const out = {};
  const queried = await conn.query(
    `SELECT Id, LastName FROM Lead WHERE Id IN ('${input.leadIds.join("','")}') ORDER BY LastName`,
  );
  out.query = { totalSize: queried.totalSize, done: queried.done, names: queried.records.map((r) => r.LastName) };
  // More than one record: jsforce sends PATCH composite/sobjects with lowercase "id".
  out.update = await conn.sobject('Lead').update(
    input.leadIds.map((id, n) => ({ Id: id, Title: `Title ${n}` })),
    { allOrNone: true },
  );
  out.created = await conn.sobject('Contact').create([{ LastName: 'One' }, { LastName: 'Two' }]);
  const counted = await conn.query('SELECT COUNT(Id) n, MAX(SystemModstamp) newest FROM Lead');
  out.aggregate = counted.records[0];
  out.identity = await conn.identity();
  // Paging with queryMore: autoFetch follows nextRecordsUrl.
  const all = [];
  await new Promise((resolve, reject) => {
    conn.query('SELECT Id FROM Contact')
      .on('record', (r) => all.push(r.Id))
      .on('end', resolve)
      .on('error', reject)
      .run({ autoFetch: true, maxFetch: 10000 });
  });
  out.contacts = all.length;
  try {
    await conn.query('SELECT Nope FROM Lead');
  } catch (err) {
    out.error = { name: err.name, errorCode: err.errorCode, message: err.message };
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
