// The dev server proxies the Durably API to the Go tenants server and adds
// the demo authentication headers: the unmodified React client cannot send
// headers itself (EventSource cannot), so a same-origin proxy does (H-070).
export default {
  server: {
    proxy: {
      '/api/durably': {
        target: process.env.TENANTS_URL ?? 'http://127.0.0.1:8787',
        changeOrigin: true,
        headers: { 'X-User-Id': 'alice', 'X-Org-Id': 'org-a', 'X-Role': 'admin' },
      },
    },
  },
}
