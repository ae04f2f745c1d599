// The stratoq console: one Alpine.js component over the /v1 JSON API.
//
// Loaded as a file (the Content-Security-Policy allows no inline script) before Alpine's
// CSP build, which evaluates the page's expressions without eval. Every value from the
// API reaches the page through x-text (textContent): never as HTML.
(function () {
  'use strict';

  var KEY = 'stratoq.apiKey'; // in sessionStorage: this tab only, never a URL or a cookie
  var REFRESH_MS = 3000;
  var PAGE_SIZE = 50;
  var BULK_RETRY = 100;
  var STATUSES = ['scheduled', 'queued', 'running', 'retrying', 'succeeded', 'failed', 'cancelled'];
  // The page is <root>/console; a deployed API adds its stage to <root>.
  var ROOT = window.location.pathname.replace(/\/console\/?$/, '');

  function ApiError(status, message) {
    this.status = status;
    this.message = message;
  }

  function describe(status, body) {
    var text = body && body.message ? body.message : 'HTTP ' + status;
    var fields = (body && body.errors) || [];
    if (fields.length && text.indexOf(fields[0].field) < 0) {
      text += ' (' + fields.map(function (e) { return e.field + ': ' + e.message; }).join('; ') + ')';
    }
    return text;
  }

  async function call(method, path, body) {
    var headers = { 'x-api-key': window.sessionStorage.getItem(KEY) || '' };
    var init = { method: method, headers: headers, cache: 'no-store', credentials: 'omit' };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    var resp = await window.fetch(ROOT + path, init);
    var data = null;
    try {
      data = await resp.json();
    } catch (e) {
      data = null;
    }
    if (!resp.ok) throw new ApiError(resp.status, describe(resp.status, data));
    return data;
  }

  function enc(value) {
    return encodeURIComponent(value);
  }

  // A datetime-local input's value, read as UTC (the page shows every time in UTC), as
  // RFC 3339; '' stays ''.
  function utc(value) {
    if (!value) return '';
    return (value.length === 16 ? value + ':00' : value) + 'Z';
  }

  function component() {
    return {
      signedIn: Boolean(window.sessionStorage.getItem(KEY)),
      keyInput: '',
      view: 'tasks',
      notice: '',
      noticeKind: '',
      statuses: STATUSES,
      filters: { status: '', name: '', queue: '', after: '', before: '', id: '' },
      applied: { status: '', name: '', queue: '', after: '', before: '' },
      me: null, // GET /v1/whoami: what this key may do, so the page offers only that
      tasks: [],
      nextToken: null,
      pageToken: null,
      tokens: [],
      task: null,
      taskId: '',
      workflow: null,
      workflowId: '',
      queues: [],
      pausedNames: [],
      schedules: [],
      keys: [],
      newKey: { tenant: '', scopes: 'tasks:read tasks:write', name: '' },
      secret: '',
      confirmText: '',
      pending: null,
      loading: false,
      again: false,

      init: function () {
        var self = this;
        if (this.signedIn) {
          // A reload keeps the key (session storage): ask again what it may do.
          call('GET', '/v1/whoami').then(function (me) { self.me = me; }).catch(this.failed.bind(this));
        }
        window.addEventListener('hashchange', function () { self.route(); });
        this.route();
        // Live numbers: the open page reloads its data every few seconds, in place.
        window.setInterval(function () { self.refresh(); }, REFRESH_MS);
      },

      // ------------------------------------------------------------ helpers
      say: function (text, kind) {
        this.notice = text;
        this.noticeKind = kind || 'ok';
      },
      failed: function (err) {
        if (err instanceof ApiError && err.status === 401) {
          this.forget();
          this.say('The API refused the key (401): sign in again.', 'error');
          return;
        }
        this.say(err instanceof ApiError ? err.message : 'The API did not answer: ' + err, 'error');
      },
      when: function (ts) {
        return ts ? String(ts).replace('T', ' ').replace(/\.\d+Z$/, ' UTC').replace(/Z$/, ' UTC') : '—';
      },
      json: function (value) {
        return value === null || value === undefined ? '—' : JSON.stringify(value, null, 2);
      },
      ask: function (text, action) {
        this.confirmText = text;
        this.pending = action;
        this.$refs.confirm.showModal();
      },
      confirmed: function () {
        var action = this.pending;
        this.pending = null;
        this.$refs.confirm.close();
        if (action) action.call(this).catch(this.failed.bind(this));
      },
      unconfirmed: function () {
        this.pending = null;
        this.$refs.confirm.close();
      },

      // ------------------------------------------------------------ session
      signIn: async function () {
        window.sessionStorage.setItem(KEY, this.keyInput.trim());
        this.keyInput = '';
        try {
          this.me = await call('GET', '/v1/whoami');
        } catch (err) {
          if (err instanceof ApiError && err.status === 401) {
            this.forget();
            this.say('The API refused that key (401).', 'error');
            return;
          }
        }
        this.signedIn = true;
        this.say('Signed in.');
        this.route();
      },
      forget: function () {
        window.sessionStorage.removeItem(KEY);
        this.me = null;
        this.signedIn = false;
        this.tasks = [];
        this.task = null;
        this.keys = [];
        this.schedules = [];
        this.queues = [];
      },
      signOut: function () {
        this.forget();
        this.say('Signed out.');
      },

      // ------------------------------------------------------------ routing
      route: function () {
        var parts = window.location.hash.replace(/^#\/?/, '').split('/');
        var view = parts[0] || 'tasks';
        if (view === 'tasks' && parts[1]) {
          this.view = 'task';
          this.taskId = decodeURIComponent(parts[1]);
          this.task = null;
        } else if (view === 'workflows' && parts[1]) {
          this.view = 'workflow';
          this.workflowId = decodeURIComponent(parts[1]);
          this.workflow = null;
        } else {
          this.view = ['tasks', 'queues', 'schedules', 'keys'].indexOf(view) >= 0 ? view : 'tasks';
        }
        this.refresh();
      },
      refresh: async function () {
        if (!this.signedIn || this.$refs.confirm.open) return;
        if (this.loading) {
          // A search or a page change while a load is in flight: load again after it.
          this.again = true;
          return;
        }
        this.loading = true;
        try {
          do {
            this.again = false;
            await this['load_' + this.view]();
          } while (this.again);
        } catch (err) {
          this.failed(err);
        } finally {
          this.loading = false;
        }
      },

      // ------------------------------------------------------------ tasks
      load_tasks: async function () {
        var q = '?limit=' + PAGE_SIZE;
        if (this.applied.status) q += '&status=' + enc(this.applied.status);
        q += this.filterQuery();
        if (this.pageToken) q += '&next_token=' + enc(this.pageToken);
        var page = await call('GET', '/v1/tasks' + q);
        this.tasks = page.tasks;
        this.nextToken = page.next_token;
      },
      // Every filter is the API's (server-side, over all tasks): name, queue, time range.
      filterQuery: function () {
        var a = this.applied;
        var q = '';
        if (a.name) q += '&name=' + enc(a.name);
        if (a.queue) q += '&queue=' + enc(a.queue);
        if (a.after) q += '&created_after=' + enc(a.after);
        if (a.before) q += '&created_before=' + enc(a.before);
        return q;
      },
      search: function () {
        var id = this.filters.id.trim();
        if (id) {
          window.location.hash = '#/tasks/' + enc(id);
          return;
        }
        this.applied = {
          status: this.filters.status,
          name: this.filters.name.trim(),
          queue: this.filters.queue.trim(),
          after: utc(this.filters.after),
          before: utc(this.filters.before)
        };
        this.pageToken = null;
        this.tokens = [];
        this.refresh();
      },
      nextPage: function () {
        this.tokens.push(this.pageToken);
        this.pageToken = this.nextToken;
        this.refresh();
      },
      prevPage: function () {
        this.pageToken = this.tokens.pop() || null;
        this.refresh();
      },
      // Runs again the failed tasks of the filters shown (applied by Search), after
      // saying how many match and which filters they are.
      retryFailed: async function () {
        var a = this.applied;
        var preview;
        try {
          preview = await call('GET', '/v1/tasks?status=failed&limit=' + BULK_RETRY + this.filterQuery());
        } catch (err) {
          this.failed(err);
          return;
        }
        var count = preview.tasks.length + (preview.next_token ? ' or more' : '');
        var what = [];
        if (a.name) what.push('named ' + a.name);
        if (a.queue) what.push('in queue ' + a.queue);
        if (a.after) what.push('created after ' + this.when(a.after));
        if (a.before) what.push('created before ' + this.when(a.before));
        var text = 'Run again ' + count + ' failed task(s)' + (what.length ? ' ' + what.join(', ') : '') +
          ' (at most ' + BULK_RETRY + ')?';
        this.ask(text, async function () {
          var body = { max_tasks: BULK_RETRY };
          if (a.name) body.name = a.name;
          if (a.queue) body.queue = a.queue;
          if (a.after) body.created_after = a.after;
          if (a.before) body.created_before = a.before;
          var r = await call('POST', '/v1/tasks/retry', body);
          this.say(r.retried + ' failed task(s) queued again' + (r.more ? '; more remain.' : '.'));
          await this.load_tasks();
        });
      },
      get canWrite() {
        return this.me === null || this.me.scopes.some(function (s) { return s === 'tasks:write' || s === 'admin'; });
      },
      get isAdmin() {
        return this.me === null || this.me.scopes.indexOf('admin') >= 0;
      },
      // Pausing and redriving act on what every tenant shares: the operator's keys only.
      get isOperator() {
        return this.me !== null && this.me.operator;
      },
      get whoText() {
        return this.me ? 'tenant ' + this.me.tenant + (this.me.operator ? ' (operator)' : '') : '';
      },

      // ------------------------------------------------------------ one task
      load_task: async function () {
        this.task = await call('GET', '/v1/tasks/' + enc(this.taskId));
      },
      // ------------------------------------------------------------ one workflow
      load_workflow: async function () {
        this.workflow = await call('GET', '/v1/workflows/' + enc(this.workflowId));
      },
      deps: function (node) {
        return node.depends_on.length ? node.depends_on.join(', ') : '—';
      },
      get cancellable() {
        return this.task !== null && ['scheduled', 'queued', 'retrying'].indexOf(this.task.status) >= 0;
      },
      get retryable() {
        return this.task !== null && ['failed', 'cancelled'].indexOf(this.task.status) >= 0;
      },
      get progressText() {
        var p = this.task && this.task.progress;
        if (!p) return '';
        return Math.round(p.value * 100) + '%' + (p.message ? ': ' + p.message : '') + ' (' + this.when(p.at) + ')';
      },
      cancelTask: function () {
        var t = this.task;
        this.ask('Cancel task ' + t.name + ' (' + t.id + ')?', async function () {
          this.task = await call('POST', '/v1/tasks/' + enc(t.id) + '/cancel');
          this.say('Task cancelled.');
        });
      },
      retryTask: function () {
        var t = this.task;
        this.ask('Run task ' + t.name + ' (' + t.id + ') again?', async function () {
          this.task = await call('POST', '/v1/tasks/' + enc(t.id) + '/retry');
          this.say('Task queued again.');
        });
      },

      // ------------------------------------------------------------ queues
      load_queues: async function () {
        var listed = await call('GET', '/v1/queues');
        this.queues = listed.queues;
        this.pausedNames = listed.paused_task_names;
      },
      togglePause: function (q) {
        var verb = q.paused ? 'resume' : 'pause';
        this.ask('Really ' + verb + ' queue ' + q.queue + ' for every tenant?', async function () {
          await call('POST', '/v1/queues/' + enc(q.queue) + '/' + verb);
          this.say('Queue ' + q.queue + (verb === 'pause' ? ' paused.' : ' resumed.'));
          await this.load_queues();
        });
      },
      redrive: function (q) {
        this.ask('Move the dead letters of queue ' + q.queue + ' back to work?', async function () {
          var r = await call('POST', '/v1/queues/' + enc(q.queue) + '/redrive', {});
          this.say(r.redriven + ' requeued, ' + r.resent + ' resent, ' + r.dropped + ' dropped' +
            (r.more ? '; more remain.' : '.'));
          await this.load_queues();
        });
      },

      // ------------------------------------------------------------ schedules
      load_schedules: async function () {
        this.schedules = (await call('GET', '/v1/schedules')).schedules;
      },
      toggleSchedule: function (s) {
        var enable = !s.enabled;
        this.ask((enable ? 'Enable' : 'Disable') + ' schedule ' + s.name + '?', async function () {
          var spec = { expression: s.expression, task: s.task, enabled: enable };
          await call('PUT', '/v1/schedules/' + enc(s.name), spec);
          this.say('Schedule ' + s.name + (enable ? ' enabled.' : ' disabled.'));
          await this.load_schedules();
        });
      },
      trigger: function (s) {
        this.ask('Fire schedule ' + s.name + ' now, once?', async function () {
          var t = await call('POST', '/v1/schedules/' + enc(s.name) + '/trigger');
          this.say('Enqueued task ' + t.id + '.');
        });
      },

      // ------------------------------------------------------------ keys
      load_keys: async function () {
        this.keys = (await call('GET', '/v1/keys')).keys;
      },
      createKey: async function () {
        var body = {
          tenant: this.newKey.tenant.trim(),
          scopes: this.newKey.scopes.split(/[\s,]+/).filter(Boolean),
          name: this.newKey.name.trim()
        };
        try {
          var created = await call('POST', '/v1/keys', body);
          this.secret = created.key;
          this.say('Key ' + created.key_id + ' created.');
          await this.load_keys();
        } catch (err) {
          this.failed(err);
        }
      },
      hideSecret: function () {
        this.secret = '';
      },
      revoke: function (k) {
        this.ask('Revoke key ' + k.key_id + ' (' + k.tenant + ')? Its clients stop at once.', async function () {
          await call('DELETE', '/v1/keys/' + enc(k.key_id));
          this.say('Key ' + k.key_id + ' revoked.');
          await this.load_keys();
        });
      }
    };
  }

  document.addEventListener('alpine:init', function () {
    window.Alpine.data('stratoq', component);
  });
})();
