// jobrelay dashboard: refreshes the page's numbers in place every few
// seconds (while the tab is visible), and asks before a bulk action.
(() => {
  'use strict';

  document.addEventListener('submit', (event) => {
    const message = event.target.dataset.confirm;
    if (message && !window.confirm(message)) {
      event.preventDefault();
    }
  });

  // The outcome of an action is shown once: later refreshes drop it.
  const url = new URL(window.location.href);
  if (url.searchParams.has('retried')) {
    url.searchParams.delete('retried');
    window.history.replaceState(null, '', url);
  }

  const every = Number(document.body.dataset.refresh || 0) * 1000;
  if (!every) {
    return;
  }
  let busy = false;
  async function refresh() {
    if (busy || document.hidden) {
      return;
    }
    busy = true;
    try {
      const res = await fetch(window.location.href, { credentials: 'same-origin', headers: { Accept: 'text/html' } });
      if (!res.ok) {
        throw new Error(String(res.status));
      }
      const next = new DOMParser().parseFromString(await res.text(), 'text/html');
      for (const id of ['main', 'status']) {
        const fresh = next.getElementById(id);
        const current = document.getElementById(id);
        if (fresh && current) {
          current.replaceWith(document.adoptNode(fresh));
        }
      }
      document.body.classList.remove('offline');
    } catch {
      document.body.classList.add('offline');
    } finally {
      busy = false;
    }
  }
  window.setInterval(refresh, every);
  document.addEventListener('visibilitychange', refresh);
})();
