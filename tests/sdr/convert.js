// Converts SFDX source to Metadata API format offline, as `sf project convert source` does:
//   node convert.js <source dir> <output dir>
// Prints the components it found and where package.xml went, as JSON.
// Run it from the project root so sfdx-project.json's sourceApiVersion is used.
const { ComponentSet, MetadataConverter } = require('@salesforce/source-deploy-retrieve');

async function main(sourceDir, outputDirectory) {
  const components = ComponentSet.fromSource(sourceDir);
  const result = await new MetadataConverter().convert(components, 'metadata', {
    type: 'directory',
    outputDirectory,
    genUniqueDir: false,
  });
  const names = components.toArray().map((c) => `${c.type.name}:${c.fullName}`);
  console.log(JSON.stringify({ components: names, packagePath: result.packagePath }));
}

main(process.argv[2], process.argv[3]).then(
  () => process.exit(0),
  (err) => {
    console.error(err.stack || String(err));
    process.exit(1);
  },
);
