// The setup page: the connection-type choice, then Meta's Embedded Signup (Facebook's JS SDK) or,
// against the Graph emulator, a simulated sign-in; both end by posting the form to
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

  // What Meta's window reports (WA_EMBEDDED_SIGNUP): the WABA and phone number chosen.
  var session = null;
  var metaError = null;
  window.addEventListener('message', function (event) {
    if (!/^https:\/\/([a-z0-9-]+\.)*facebook\.com$/.test(event.origin)) return;
    var data = event.data;
    if (typeof data === 'string') {
      try { data = JSON.parse(data); } catch (e) { return; }
    }
    if (!data || data.type !== 'WA_EMBEDDED_SIGNUP') return;
    var info = data.data || {};
    if (data.event === 'FINISH' || data.event === 'FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING') {
      session = { waba_id: info.waba_id, phone_number_id: info.phone_number_id };
    } else if (data.event === 'FINISH_ONLY_WABA') {
      session = { waba_id: info.waba_id, phone_number_id: null, onlyWaba: true };
    } else if (data.event === 'CANCEL') {
      metaError = t.cancelled;
    } else if (data.event === 'ERROR') {
      metaError = t.facebook_auth_failed;
    }
  });

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
    setBusy(true);
    window.FB.login(function (response) {
      var code = response && response.authResponse && response.authResponse.code;
      if (code) {
        finish(code, 0);
      } else {
        showError(metaError || t.cancelled);
      }
    }, {
      config_id: config.configId,
      response_type: 'code',
      override_default_response_type: true,
      extras: {
        setup: {},
        featureType: type === 'coexistence' ? 'whatsapp_business_app_onboarding' : '',
        sessionInfoVersion: '3'
      }
    });
  });
})();
