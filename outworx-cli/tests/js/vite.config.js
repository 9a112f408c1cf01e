// No React plugin: esbuild's automatic JSX is all the page needs.
export default { esbuild: { jsx: 'automatic' }, logLevel: 'warn' };
