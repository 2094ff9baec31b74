// One linter for the whole tree. Besides style, it enforces the package
// layering from STYLE.md: imports flow mux <- transport <- {server, agent} <- cli,
// controller (the Kubernetes registry) sits on server: server <- controller <- cli,
// and pki sits beside transport. tsc -b enforces the same through project
// references; this rule gives the clearer message.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

const layers = {
  mux: [],
  pki: ['mux'],
  transport: ['mux'],
  server: ['mux', 'transport', 'pki'],
  agent: ['mux', 'transport', 'pki'],
  controller: ['mux', 'pki', 'server'],
  cli: ['mux', 'transport', 'pki', 'server', 'agent', 'controller']
}
const all = Object.keys(layers)

const layerRules = Object.entries(layers).map(([pkg, allowed]) => ({
  files: [`packages/${pkg}/**/*.ts`],
  rules: {
    'no-restricted-imports': ['error', {
      patterns: [
        ...(pkg === 'cli'
          ? []
          : [{
              group: all.filter((p) => p !== pkg && !allowed.includes(p)).map((p) => `@tower/${p}`),
              message: `packages/${pkg} may import only: ${allowed.map((p) => '@tower/' + p).join(', ') || 'node: builtins'}`
            }]),
        { group: ['../../*/src/*', '../../../*/src/*'], message: 'import other packages by name, not by path' }
      ]
    }]
  }
}))

export default tseslint.config(
  { ignores: ['node_modules/', '.tsbuild/', '**/dist/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2023, sourceType: 'module' },
    rules: {
      'no-console': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'off'
    }
  },
  ...layerRules,
  {
    files: ['packages/mux/src/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [{ group: ['ws', 'pino', '@tower/*', 'node-forge'], message: 'mux runs over any Duplex and imports node: builtins only' }] }] }
  },
  {
    files: ['packages/cli/src/**/*.ts', 'bench/**/*.ts', 'test/**/*.ts', 'packages/*/test/**/*.ts'],
    rules: { 'no-console': 'off' }
  }
)
