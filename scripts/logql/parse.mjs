// Parses LogQL with Grafana's own grammar (the Loki query editor's, `@grafana/lezer-logql`): reads a JSON array of
// queries on stdin and prints, for each, where the grammar found errors and what the query names: the stream
// selector's labels, the line filters' strings, the label parsers and the labels the label filters compare.
import { parser } from '@grafana/lezer-logql';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const queries = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const unquote = (text) => (text.startsWith('"') ? JSON.parse(text) : text.slice(1, -1));

const parsed = queries.map((query) => {
  const found = { query, errors: [], selector_labels: [], line_filters: [], parsers: [], filter_labels: [] };
  const text = (node) => query.slice(node.from, node.to);
  parser.parse(query).iterate({
    enter(node) {
      const name = node.type.name;
      if (node.type.isError) {
        found.errors.push({ at: node.from, text: text(node) });
      } else if (name === 'Matcher' && node.node.parent?.type.name === 'Matchers') {
        found.selector_labels.push(text(node.node.getChild('Identifier')));
      } else if (name === 'LineFilter') {
        const string = node.node.getChild('String');
        if (string) found.line_filters.push(unquote(text(string)));
      } else if (['LabelParser', 'LogfmtParser', 'JsonExpressionParser', 'LogfmtExpressionParser'].includes(name)) {
        found.parsers.push(text(node));
        return false;
      } else if (['Matcher', 'NumberFilter', 'DurationFilter', 'BytesFilter', 'IpLabelFilter'].includes(name)) {
        const label = node.node.getChild('Identifier');
        if (label) found.filter_labels.push(text(label));
      }
      return undefined;
    },
  });
  return found;
});
process.stdout.write(JSON.stringify(parsed));
