// The setup page: the connection-type choice, then Meta's Embedded Signup v4 (Facebook's JS SDK)
// or, against the Graph emulator, a simulated sign-in; both end by posting the form to
// `{token}/complete`, which answers with a redirect.
(function () {
  'use strict';
  var config = JSON.parse(document.getElementById('setup-config').textContent);
  var t = config.strings;
  var form = document.getElementById('complete-form');
  var errorBox = document.getElementById('error');
  var statusBox = document.getElementById('status');
  if (!form) return;
  form.addEventListener('change', function () { errorBox.hidden = true; });

  function setBusy(busy) {
    var buttons = document.querySelectorAll('button.primary');
    for (var i = 0; i < buttons.length; i++) buttons[i].disabled = busy;
  }
  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
    statusBox.hidden = true;
    setBusy(false);
  }
  function connectionType() {
    var checked = form.querySelector('input[name="connection_type"]:checked');
    return checked ? checked.value : null;
  }
  function begin() {
    errorBox.hidden = true;
    var type = connectionType();
    if (!type) showError(t.choose_type_first);
    return type;
  }
  function submit(code, wabaId, phoneNumberId) {
    form.elements.code.value = code || '';
    form.elements.waba_id.value = wabaId || '';
    form.elements.phone_number_id.value = phoneNumberId || '';
    errorBox.hidden = true;
    statusBox.hidden = false;
    setBusy(true);
    form.submit();
  }

  // A provisioned number (provision_phone_number links): reserved when Dedicated is picked,
  // shown with Meta's code as soon as it reaches the number (polled; no reload).
  var base = form.getAttribute('action').replace(/complete$/, '');
  var p = config.provisionStrings;
  var provisioned = document.getElementById('provisioned');
  var simPhone = document.getElementById('simulated-phone-step');
  var simIds = document.getElementById('simulated-signup');
  var reserved = null;
  var polling = null;
  function byId(id) { return document.getElementById(id); }
  function showNumber(number) {
    reserved = number;
    byId('provisioned-status').hidden = true;
    byId('provisioned-number').textContent = number.display_number;
    byId('provisioned-instruction').hidden = false;
    var sim = byId('sim-phone-number');
    if (sim && !sim.value) sim.value = number.phone_number;
    if (number.code) {
      byId('provisioned-code').textContent = number.code;
      byId('provisioned-code-box').hidden = false;
      byId('provisioned-waiting').hidden = true;
      byId('provisioned-status').textContent = p.code_received;
      byId('provisioned-status').hidden = false;
    } else {
      byId('provisioned-waiting').hidden = false;
    }
  }
  function unavailable(message) {
    byId('provisioned-status').hidden = true;
    var box = byId('provisioned-unavailable');
    box.textContent = message || p.unavailable;
    box.hidden = false;
  }
  function poll() {
    fetch(base + 'provisioned', { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (answer) { if (answer && answer.number) showNumber(answer.number); })
      .catch(function () {});
  }
  function reserve() {
    if (reserved || polling) return;
    byId('provisioned-status').textContent = p.reserving;
    fetch(base + 'provision', { method: 'POST', credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) { return r.json().catch(function () { return {}; }); })
      .then(function (answer) {
        if (answer.status === 'reserved') {
          showNumber(answer.number);
          polling = setInterval(poll, 2000);
        } else {
          unavailable(answer.message);
        }
      })
      .catch(function () { unavailable(); });
  }
  function typeChanged() {
    if (!config.provision) return;
    var dedicated = connectionType() === 'dedicated';
    provisioned.hidden = !dedicated;
    if (simPhone) simPhone.hidden = !dedicated;
    if (simIds) simIds.hidden = dedicated;
    if (dedicated) reserve();
  }
  form.addEventListener('change', typeChanged);
  typeChanged();

  if (config.mode === 'simulated' && simPhone) {
    var pending = null;
    byId('sim-send-code').addEventListener('click', function () {
      if (!begin()) return;
      fetch(base + 'simulated/phone_number', {
        method: 'POST', credentials: 'same-origin', cache: 'no-store',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ phone_number: byId('sim-phone-number').value.trim(), code_method: 'SMS' })
      })
        .then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); })
        .then(function (answer) {
          if (!answer.ok) { showError(answer.body.error || t.missing_ids); return; }
          pending = answer.body;
          byId('sim-code-sent').hidden = false;
          poll();
        })
        .catch(function () { showError(t.missing_ids); });
    });
    byId('sim-verify').addEventListener('click', function () {
      if (!begin()) return;
      if (!pending) { showError(t.missing_ids); return; }
      var code = byId('sim-code').value.trim();
      fetch(base + 'simulated/verify', {
        method: 'POST', credentials: 'same-origin', cache: 'no-store',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ phone_number_id: pending.phone_number_id, code: code })
      })
        .then(function (r) {
          if (r.ok) {
            submit('sandbox-code-' + pending.phone_number_id, pending.business_account_id, pending.phone_number_id);
          } else {
            showError(p.sim_wrong_code);
          }
        })
        .catch(function () { showError(p.sim_wrong_code); });
    });
  }

  if (config.mode === 'simulated') {
    document.getElementById('simulated-connect').addEventListener('click', function () {
      if (!begin()) return;
      var pnid = document.getElementById('sim-phone-number-id').value.trim();
      var waba = document.getElementById('sim-waba-id').value.trim();
      if (!/^[0-9]{1,32}$/.test(pnid) || !/^[0-9]{1,32}$/.test(waba)) {
        showError(t.missing_ids);
        return;
      }
      // The emulator exchanges `sandbox-code-<phone_number_id>` for that number's token.
      submit('sandbox-code-' + pnid, waba, pnid);
    });
    return;
  }

  var button = document.getElementById('connect');
  if (!config.appId || !config.configId) {
    showError(t.not_configured);
    button.disabled = true;
    return;
  }

  // What Meta's window reports: a message from facebook.com, a JSON string of type
  // WA_EMBEDDED_SIGNUP (Embedded Signup v4's session logging, sent for every flow):
  //   FINISH, FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING (and Meta's other FINISH_… kinds): the
  //     asset IDs (waba_id, phone_number_id, business_id…); the coexistence one may carry only
  //     waba_id;
  //   FINISH_ONLY_WABA: finished without a phone number;
  //   CANCEL: abandoned at data.current_step, or, with data.error_message (error_code,
  //     session_id, timestamp), an error the customer saw and reported;
  //   ERROR: an error, read like a reported one (older shape).
  // Anything else, and any message from another origin, is ignored.
  var session = null;
  var metaError = null;
  var metaErrorReported = false;
  // 'open' while Meta's window is up, 'failed' once FB.login answered without a code, when a
  // late CANCEL or ERROR still replaces the message shown.
  var attempt = 'idle';
  function metaId(value) {
    if (typeof value === 'number') value = String(value);
    return typeof value === 'string' && value.trim() ? value.trim() : null;
  }
  function onlyWaba(list) {
    return Array.isArray(list) && list.length === 1 ? metaId(list[0]) : null;
  }
  // Meta's own words for a reported error, with the references its support asks for.
  function reportedError(info) {
    var text = typeof info.error_message === 'string' ? info.error_message.trim() : '';
    if (!text) return null;
    var refs = [metaId(info.error_code), metaId(info.session_id)].filter(Boolean);
    return refs.length ? text + ' (' + refs.join(' \u00b7 ') + ')' : text;
  }
  function metaFailed(message, reported) {
    if (metaErrorReported && !reported) return; // a later plain CANCEL keeps Meta's error
    metaError = message;
    metaErrorReported = reported;
    if (attempt === 'failed') showError(message);
  }
  window.addEventListener('message', function (event) {
    if (!/^https:\/\/([a-z0-9-]+\.)*facebook\.com$/.test(event.origin)) return;
    var data = event.data;
    if (typeof data === 'string') {
      try { data = JSON.parse(data); } catch (e) { return; }
    }
    if (!data || typeof data !== 'object' || data.type !== 'WA_EMBEDDED_SIGNUP') return;
    var info = data.data && typeof data.data === 'object' ? data.data : {};
    var name = typeof data.event === 'string' ? data.event : '';
    if (name === 'CANCEL' || name === 'ERROR') {
      var reported = reportedError(info);
      metaFailed(reported || (name === 'ERROR' ? t.facebook_auth_failed : t.cancelled), !!reported);
    } else if (name === 'FINISH_ONLY_WABA') {
      session = { waba_id: metaId(info.waba_id), phone_number_id: null, onlyWaba: true };
    } else if (name.indexOf('FINISH') === 0) {
      session = {
        waba_id: metaId(info.waba_id) || onlyWaba(info.waba_ids),
        phone_number_id: metaId(info.phone_number_id)
      };
    }
  });

  // Embedded Signup v4: the version comes from the Facebook Login for Business configuration
  // (meta.embedded_signup_config_id; one created with products selected is v4), not from
  // `extras`, which has no `version` and, session info being sent for every v4 flow, no
  // sessionInfoVersion. Coexistence adds featureType, as Meta's "Onboard WhatsApp Business app
  // users" page writes it (sessionInfoVersion included).
  function launchExtras(type) {
    if (type === 'coexistence') {
      return { setup: {}, featureType: 'whatsapp_business_app_onboarding', sessionInfoVersion: '3' };
    }
    return { setup: {} };
  }

  window.fbAsyncInit = function () {
    window.FB.init({ appId: config.appId, autoLogAppEvents: true, xfbml: false, version: config.version });
  };
  var sdk = document.createElement('script');
  sdk.src = config.sdkUrl;
  sdk.async = true;
  sdk.defer = true;
  sdk.crossOrigin = 'anonymous';
  sdk.onerror = function () { showError(t.sdk_missing); };
  document.head.appendChild(sdk);

  // The session message can arrive just after the login callback; wait for it a little.
  function finish(code, waited) {
    if (session && session.onlyWaba) {
      session = null;
      showError(t.no_number);
    } else if (session) {
      submit(code, session.waba_id, session.phone_number_id);
    } else if (waited < 5000) {
      setTimeout(function () { finish(code, waited + 250); }, 250);
    } else {
      // No session info: the server answers with the failure redirect.
      submit(code, '', '');
    }
  }

  button.addEventListener('click', function () {
    var type = begin();
    if (!type) return;
    if (!window.FB) {
      showError(t.sdk_missing);
      return;
    }
    session = null;
    metaError = null;
    metaErrorReported = false;
    attempt = 'open';
    setBusy(true);
    window.FB.login(function (response) {
      var code = response && response.authResponse && response.authResponse.code;
      if (code) {
        attempt = 'finishing';
        finish(code, 0);
      } else {
        attempt = 'failed';
        showError(metaError || t.cancelled);
      }
    }, {
      config_id: config.configId,
      response_type: 'code',
      override_default_response_type: true,
      extras: launchExtras(type)
    });
  });
})();
