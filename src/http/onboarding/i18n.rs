//! The setup page's words in its six languages (`en es pt hi id ar`, contract §11.2).

use crate::domain::onboarding::FailureCode;
use crate::domain::setup_links::LANGUAGES;

pub struct Strings {
    pub title: &'static str,
    pub intro: &'static str,
    pub choose_type: &'static str,
    pub dedicated_title: &'static str,
    pub dedicated_desc: &'static str,
    pub coexistence_title: &'static str,
    pub coexistence_desc: &'static str,
    pub warning_title: &'static str,
    pub warning: &'static str,
    pub connect_button: &'static str,
    pub simulated_title: &'static str,
    pub simulated_note: &'static str,
    pub phone_number_id_label: &'static str,
    pub waba_id_label: &'static str,
    pub simulated_button: &'static str,
    pub working: &'static str,
    pub choose_type_first: &'static str,
    pub missing_ids: &'static str,
    pub cancelled: &'static str,
    pub no_number: &'static str,
    pub sdk_missing: &'static str,
    pub not_configured: &'static str,
    pub expired_title: &'static str,
    pub revoked_title: &'static str,
    pub used_title: &'static str,
    pub ask_new_link: &'static str,
    pub used_body: &'static str,
    pub not_found_title: &'static str,
    pub not_found_body: &'static str,
    pub success_title: &'static str,
    pub success_body: &'static str,
    pub failure_title: &'static str,
    pub try_again: &'static str,
    pub continue_label: &'static str,
    pub redirecting: &'static str,
    pub unavailable_title: &'static str,
    pub unavailable_body: &'static str,
    pub error_code_label: &'static str,
    pub facebook_auth_failed: &'static str,
    pub phone_verification_failed: &'static str,
    pub token_exchange_failed: &'static str,
}

impl Strings {
    /// What to tell the customer about a failure, and what to do next.
    pub fn failure(&self, code: FailureCode) -> &'static str {
        match code {
            FailureCode::FacebookAuthFailed => self.facebook_auth_failed,
            FailureCode::PhoneVerificationFailed => self.phone_verification_failed,
            FailureCode::TokenExchangeFailed => self.token_exchange_failed,
            FailureCode::LinkExpired => self.ask_new_link,
            FailureCode::AlreadyUsed => self.used_body,
        }
    }
}

/// The strings of `lang` (one of [`LANGUAGES`]; anything else is English).
pub fn strings(lang: &str) -> &'static Strings {
    match lang {
        "es" => &ES,
        "pt" => &PT,
        "hi" => &HI,
        "id" => &ID,
        "ar" => &AR,
        _ => &EN,
    }
}

/// The best of [`LANGUAGES`] for an `Accept-Language` header, else `en`.
pub fn negotiate(accept_language: Option<&str>) -> &'static str {
    let Some(header) = accept_language else {
        return "en";
    };
    let mut ranked: Vec<(f32, usize, &'static str)> = Vec::new();
    for (position, item) in header.split(',').enumerate() {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or("").trim();
        let quality = parts
            .find_map(|p| p.trim().strip_prefix("q="))
            .and_then(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let primary = tag
            .split(['-', '_'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if let Some(lang) = LANGUAGES.iter().find(|l| **l == primary) {
            if quality > 0.0 {
                ranked.push((quality, position, lang));
            }
        }
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    ranked.first().map_or("en", |r| r.2)
}

pub fn is_rtl(lang: &str) -> bool {
    lang == "ar"
}

pub static EN: Strings = Strings {
    title: "Connect your WhatsApp number",
    intro: "Sign in with Facebook to connect a WhatsApp Business phone number. It takes about two minutes.",
    choose_type: "How do you want to connect?",
    dedicated_title: "Dedicated",
    dedicated_desc: "Up to 1000 msg/s, API only. The number can no longer be used in the WhatsApp Business app.",
    coexistence_title: "Coexistence",
    coexistence_desc: "5 msg/s, keeps the WhatsApp Business app on your phone working.",
    warning_title: "Important",
    warning: "In Meta's window, do not choose “Display name only”: it breaks the connection. Pick an existing phone number or add a new one.",
    connect_button: "Continue with Facebook",
    simulated_title: "Simulated Meta sign-in",
    simulated_note: "This server runs against the Graph emulator: no Facebook account is needed. Enter a phone number ID and WABA ID the emulator serves.",
    phone_number_id_label: "Phone number ID",
    waba_id_label: "WhatsApp Business Account ID",
    simulated_button: "Sign in (simulated)",
    working: "Connecting your number…",
    choose_type_first: "Choose how you want to connect first.",
    missing_ids: "Enter both IDs, digits only.",
    cancelled: "The sign-in was cancelled or closed. Click the button to start again.",
    no_number: "You finished without a phone number (“Display name only”). Start again and pick or add a phone number.",
    sdk_missing: "Facebook's sign-in could not load. Check your connection or ad blocker, then reload this page.",
    not_configured: "This server is not set up for WhatsApp signup yet. Please tell the company that sent you this link.",
    expired_title: "This setup link has expired",
    revoked_title: "This setup link is no longer valid",
    used_title: "This setup link was already used",
    ask_new_link: "Ask the company that sent it for a new link.",
    used_body: "A number was connected with it already. To connect another number, ask for a new link.",
    not_found_title: "Setup link not found",
    not_found_body: "Check that you opened the whole link, or ask the company that sent it for a new one.",
    success_title: "Your WhatsApp number is connected",
    success_body: "You can close this page.",
    failure_title: "The connection did not complete",
    try_again: "Try again",
    continue_label: "Continue",
    redirecting: "Taking you back…",
    unavailable_title: "Something went wrong on our side",
    unavailable_body: "Please wait a moment and try again.",
    error_code_label: "Error code",
    facebook_auth_failed: "Meta did not confirm the sign-in. Try again and finish every step in Meta's window.",
    phone_verification_failed: "The phone number could not be verified or connected. Make sure you pick or add a phone number (not “Display name only”) and, for a reconnect, the same number as before. Then try again.",
    token_exchange_failed: "Meta's sign-in could not be confirmed (it may have expired). Try again.",
};

pub static ES: Strings = Strings {
    title: "Conecta tu número de WhatsApp",
    intro: "Inicia sesión con Facebook para conectar un número de WhatsApp Business. Tarda unos dos minutos.",
    choose_type: "¿Cómo quieres conectarlo?",
    dedicated_title: "Dedicado",
    dedicated_desc: "Hasta 1000 msg/s, solo API. El número ya no podrá usarse en la app WhatsApp Business.",
    coexistence_title: "Coexistencia",
    coexistence_desc: "5 msg/s, la app WhatsApp Business de tu teléfono sigue funcionando.",
    warning_title: "Importante",
    warning: "En la ventana de Meta, no elijas “Solo nombre visible” (Display name only): rompe la conexión. Elige un número existente o agrega uno nuevo.",
    connect_button: "Continuar con Facebook",
    simulated_title: "Inicio de sesión de Meta simulado",
    simulated_note: "Este servidor usa el emulador de Graph: no necesitas una cuenta de Facebook. Introduce un ID de número y un ID de WABA que sirva el emulador.",
    phone_number_id_label: "ID del número de teléfono",
    waba_id_label: "ID de la cuenta de WhatsApp Business",
    simulated_button: "Iniciar sesión (simulado)",
    working: "Conectando tu número…",
    choose_type_first: "Primero elige cómo quieres conectarlo.",
    missing_ids: "Introduce ambos ID, solo dígitos.",
    cancelled: "El inicio de sesión se canceló o se cerró. Haz clic en el botón para empezar de nuevo.",
    no_number: "Terminaste sin un número de teléfono (“Solo nombre visible”). Empieza de nuevo y elige o agrega un número.",
    sdk_missing: "No se pudo cargar el inicio de sesión de Facebook. Revisa tu conexión o tu bloqueador de anuncios y recarga la página.",
    not_configured: "Este servidor aún no está configurado para el registro de WhatsApp. Avisa a la empresa que te envió este enlace.",
    expired_title: "Este enlace de configuración ha caducado",
    revoked_title: "Este enlace de configuración ya no es válido",
    used_title: "Este enlace de configuración ya se usó",
    ask_new_link: "Pide un enlace nuevo a la empresa que te lo envió.",
    used_body: "Ya se conectó un número con él. Para conectar otro número, pide un enlace nuevo.",
    not_found_title: "No se encontró el enlace de configuración",
    not_found_body: "Comprueba que abriste el enlace completo o pide uno nuevo a la empresa que te lo envió.",
    success_title: "Tu número de WhatsApp está conectado",
    success_body: "Ya puedes cerrar esta página.",
    failure_title: "La conexión no se completó",
    try_again: "Intentar de nuevo",
    continue_label: "Continuar",
    redirecting: "Te estamos llevando de vuelta…",
    unavailable_title: "Algo salió mal de nuestro lado",
    unavailable_body: "Espera un momento e inténtalo de nuevo.",
    error_code_label: "Código de error",
    facebook_auth_failed: "Meta no confirmó el inicio de sesión. Inténtalo de nuevo y completa todos los pasos en la ventana de Meta.",
    phone_verification_failed: "No se pudo verificar ni conectar el número. Asegúrate de elegir o agregar un número (no “Solo nombre visible”) y, si reconectas, el mismo número que antes. Luego inténtalo de nuevo.",
    token_exchange_failed: "No se pudo confirmar el inicio de sesión de Meta (puede haber caducado). Inténtalo de nuevo.",
};

pub static PT: Strings = Strings {
    title: "Conecte seu número do WhatsApp",
    intro: "Entre com o Facebook para conectar um número do WhatsApp Business. Leva cerca de dois minutos.",
    choose_type: "Como você quer conectar?",
    dedicated_title: "Dedicado",
    dedicated_desc: "Até 1000 msg/s, somente API. O número não poderá mais ser usado no app WhatsApp Business.",
    coexistence_title: "Coexistência",
    coexistence_desc: "5 msg/s, o app WhatsApp Business no seu celular continua funcionando.",
    warning_title: "Importante",
    warning: "Na janela da Meta, não escolha “Somente nome de exibição” (Display name only): isso quebra a conexão. Escolha um número existente ou adicione um novo.",
    connect_button: "Continuar com o Facebook",
    simulated_title: "Login simulado da Meta",
    simulated_note: "Este servidor usa o emulador do Graph: não é preciso conta do Facebook. Informe um ID de número e um ID de WABA que o emulador atende.",
    phone_number_id_label: "ID do número de telefone",
    waba_id_label: "ID da conta do WhatsApp Business",
    simulated_button: "Entrar (simulado)",
    working: "Conectando seu número…",
    choose_type_first: "Primeiro escolha como você quer conectar.",
    missing_ids: "Informe os dois IDs, somente dígitos.",
    cancelled: "O login foi cancelado ou fechado. Clique no botão para começar de novo.",
    no_number: "Você terminou sem um número de telefone (“Somente nome de exibição”). Comece de novo e escolha ou adicione um número.",
    sdk_missing: "Não foi possível carregar o login do Facebook. Verifique sua conexão ou bloqueador de anúncios e recarregue a página.",
    not_configured: "Este servidor ainda não está configurado para o cadastro no WhatsApp. Avise a empresa que enviou este link.",
    expired_title: "Este link de configuração expirou",
    revoked_title: "Este link de configuração não é mais válido",
    used_title: "Este link de configuração já foi usado",
    ask_new_link: "Peça um novo link à empresa que o enviou.",
    used_body: "Um número já foi conectado com ele. Para conectar outro número, peça um novo link.",
    not_found_title: "Link de configuração não encontrado",
    not_found_body: "Verifique se você abriu o link inteiro ou peça um novo à empresa que o enviou.",
    success_title: "Seu número do WhatsApp está conectado",
    success_body: "Você já pode fechar esta página.",
    failure_title: "A conexão não foi concluída",
    try_again: "Tentar de novo",
    continue_label: "Continuar",
    redirecting: "Levando você de volta…",
    unavailable_title: "Algo deu errado do nosso lado",
    unavailable_body: "Aguarde um momento e tente de novo.",
    error_code_label: "Código de erro",
    facebook_auth_failed: "A Meta não confirmou o login. Tente de novo e conclua todas as etapas na janela da Meta.",
    phone_verification_failed: "Não foi possível verificar ou conectar o número. Escolha ou adicione um número (não “Somente nome de exibição”) e, numa reconexão, o mesmo número de antes. Depois tente de novo.",
    token_exchange_failed: "Não foi possível confirmar o login da Meta (pode ter expirado). Tente de novo.",
};

pub static HI: Strings = Strings {
    title: "अपना WhatsApp नंबर कनेक्ट करें",
    intro: "WhatsApp Business फ़ोन नंबर कनेक्ट करने के लिए Facebook से साइन इन करें। इसमें लगभग दो मिनट लगते हैं।",
    choose_type: "आप कैसे कनेक्ट करना चाहते हैं?",
    dedicated_title: "डेडिकेटेड",
    dedicated_desc: "1000 msg/s तक, केवल API। यह नंबर फिर WhatsApp Business ऐप में इस्तेमाल नहीं हो सकेगा।",
    coexistence_title: "कोएग्ज़िस्टेंस",
    coexistence_desc: "5 msg/s, आपके फ़ोन का WhatsApp Business ऐप चलता रहता है।",
    warning_title: "ज़रूरी",
    warning: "Meta की विंडो में “Display name only” (केवल डिस्प्ले नाम) न चुनें: इससे कनेक्शन टूट जाता है। कोई मौजूदा फ़ोन नंबर चुनें या नया जोड़ें।",
    connect_button: "Facebook के साथ जारी रखें",
    simulated_title: "सिम्युलेटेड Meta साइन-इन",
    simulated_note: "यह सर्वर Graph एम्युलेटर पर चलता है: Facebook खाते की ज़रूरत नहीं है। एम्युलेटर का कोई फ़ोन नंबर ID और WABA ID डालें।",
    phone_number_id_label: "फ़ोन नंबर ID",
    waba_id_label: "WhatsApp Business खाता ID",
    simulated_button: "साइन इन करें (सिम्युलेटेड)",
    working: "आपका नंबर कनेक्ट हो रहा है…",
    choose_type_first: "पहले चुनें कि आप कैसे कनेक्ट करना चाहते हैं।",
    missing_ids: "दोनों ID डालें, केवल अंक।",
    cancelled: "साइन-इन रद्द या बंद हो गया। फिर से शुरू करने के लिए बटन पर क्लिक करें।",
    no_number: "आपने फ़ोन नंबर के बिना समाप्त किया (“Display name only”)। फिर से शुरू करें और कोई फ़ोन नंबर चुनें या जोड़ें।",
    sdk_missing: "Facebook साइन-इन लोड नहीं हो सका। अपना कनेक्शन या ऐड ब्लॉकर जाँचें, फिर यह पेज रीलोड करें।",
    not_configured: "यह सर्वर अभी WhatsApp साइनअप के लिए सेट नहीं है। कृपया उस कंपनी को बताएँ जिसने यह लिंक भेजा है।",
    expired_title: "इस सेटअप लिंक की समय-सीमा समाप्त हो गई है",
    revoked_title: "यह सेटअप लिंक अब मान्य नहीं है",
    used_title: "यह सेटअप लिंक पहले ही इस्तेमाल हो चुका है",
    ask_new_link: "जिस कंपनी ने इसे भेजा है, उससे नया लिंक माँगें।",
    used_body: "इससे पहले ही एक नंबर कनेक्ट हो चुका है। दूसरा नंबर कनेक्ट करने के लिए नया लिंक माँगें।",
    not_found_title: "सेटअप लिंक नहीं मिला",
    not_found_body: "जाँचें कि आपने पूरा लिंक खोला है, या भेजने वाली कंपनी से नया लिंक माँगें।",
    success_title: "आपका WhatsApp नंबर कनेक्ट हो गया है",
    success_body: "अब आप यह पेज बंद कर सकते हैं।",
    failure_title: "कनेक्शन पूरा नहीं हुआ",
    try_again: "फिर से कोशिश करें",
    continue_label: "जारी रखें",
    redirecting: "आपको वापस ले जा रहे हैं…",
    unavailable_title: "हमारी तरफ़ से कुछ गड़बड़ हुई",
    unavailable_body: "कृपया थोड़ी देर रुककर फिर से कोशिश करें।",
    error_code_label: "त्रुटि कोड",
    facebook_auth_failed: "Meta ने साइन-इन की पुष्टि नहीं की। फिर से कोशिश करें और Meta की विंडो में सभी चरण पूरे करें।",
    phone_verification_failed: "फ़ोन नंबर सत्यापित या कनेक्ट नहीं हो सका। कोई फ़ोन नंबर चुनें या जोड़ें (“Display name only” नहीं) और रीकनेक्ट में वही नंबर चुनें जो पहले था। फिर से कोशिश करें।",
    token_exchange_failed: "Meta साइन-इन की पुष्टि नहीं हो सकी (शायद समय-सीमा समाप्त हो गई)। फिर से कोशिश करें।",
};

pub static ID: Strings = Strings {
    title: "Hubungkan nomor WhatsApp Anda",
    intro: "Masuk dengan Facebook untuk menghubungkan nomor telepon WhatsApp Business. Hanya sekitar dua menit.",
    choose_type: "Bagaimana Anda ingin menghubungkan?",
    dedicated_title: "Khusus (Dedicated)",
    dedicated_desc: "Hingga 1000 pesan/detik, hanya API. Nomor tidak bisa lagi dipakai di aplikasi WhatsApp Business.",
    coexistence_title: "Koeksistensi",
    coexistence_desc: "5 pesan/detik, aplikasi WhatsApp Business di ponsel Anda tetap berjalan.",
    warning_title: "Penting",
    warning: "Di jendela Meta, jangan pilih “Hanya nama tampilan” (Display name only): itu memutus koneksi. Pilih nomor telepon yang ada atau tambahkan nomor baru.",
    connect_button: "Lanjutkan dengan Facebook",
    simulated_title: "Masuk Meta simulasi",
    simulated_note: "Server ini berjalan dengan emulator Graph: tidak perlu akun Facebook. Masukkan ID nomor telepon dan ID WABA yang dilayani emulator.",
    phone_number_id_label: "ID nomor telepon",
    waba_id_label: "ID Akun WhatsApp Business",
    simulated_button: "Masuk (simulasi)",
    working: "Menghubungkan nomor Anda…",
    choose_type_first: "Pilih dulu cara Anda ingin menghubungkan.",
    missing_ids: "Masukkan kedua ID, hanya angka.",
    cancelled: "Proses masuk dibatalkan atau ditutup. Klik tombol untuk memulai lagi.",
    no_number: "Anda selesai tanpa nomor telepon (“Hanya nama tampilan”). Mulai lagi dan pilih atau tambahkan nomor telepon.",
    sdk_missing: "Proses masuk Facebook tidak dapat dimuat. Periksa koneksi atau pemblokir iklan Anda, lalu muat ulang halaman ini.",
    not_configured: "Server ini belum disiapkan untuk pendaftaran WhatsApp. Beri tahu perusahaan yang mengirim tautan ini.",
    expired_title: "Tautan penyiapan ini sudah kedaluwarsa",
    revoked_title: "Tautan penyiapan ini tidak berlaku lagi",
    used_title: "Tautan penyiapan ini sudah digunakan",
    ask_new_link: "Minta tautan baru kepada perusahaan yang mengirimnya.",
    used_body: "Sebuah nomor sudah dihubungkan dengan tautan ini. Untuk menghubungkan nomor lain, minta tautan baru.",
    not_found_title: "Tautan penyiapan tidak ditemukan",
    not_found_body: "Pastikan Anda membuka tautan secara lengkap, atau minta tautan baru kepada perusahaan yang mengirimnya.",
    success_title: "Nomor WhatsApp Anda sudah terhubung",
    success_body: "Anda dapat menutup halaman ini.",
    failure_title: "Koneksi tidak selesai",
    try_again: "Coba lagi",
    continue_label: "Lanjutkan",
    redirecting: "Mengembalikan Anda…",
    unavailable_title: "Terjadi kesalahan di pihak kami",
    unavailable_body: "Tunggu sebentar lalu coba lagi.",
    error_code_label: "Kode kesalahan",
    facebook_auth_failed: "Meta tidak mengonfirmasi proses masuk. Coba lagi dan selesaikan setiap langkah di jendela Meta.",
    phone_verification_failed: "Nomor telepon tidak dapat diverifikasi atau dihubungkan. Pastikan Anda memilih atau menambahkan nomor telepon (bukan “Hanya nama tampilan”) dan, untuk penyambungan ulang, nomor yang sama seperti sebelumnya. Lalu coba lagi.",
    token_exchange_failed: "Proses masuk Meta tidak dapat dikonfirmasi (mungkin sudah kedaluwarsa). Coba lagi.",
};

pub static AR: Strings = Strings {
    title: "اربط رقم واتساب الخاص بك",
    intro: "سجّل الدخول عبر فيسبوك لربط رقم هاتف واتساب للأعمال. يستغرق الأمر نحو دقيقتين.",
    choose_type: "كيف تريد الربط؟",
    dedicated_title: "مخصّص",
    dedicated_desc: "حتى 1000 رسالة/ثانية، عبر API فقط. لن يعود بالإمكان استخدام الرقم في تطبيق واتساب للأعمال.",
    coexistence_title: "التعايش",
    coexistence_desc: "5 رسائل/ثانية، ويبقى تطبيق واتساب للأعمال على هاتفك يعمل.",
    warning_title: "مهم",
    warning: "في نافذة Meta، لا تختر «اسم العرض فقط» (Display name only): فهذا يقطع الربط. اختر رقم هاتف موجودًا أو أضف رقمًا جديدًا.",
    connect_button: "المتابعة باستخدام فيسبوك",
    simulated_title: "تسجيل دخول Meta محاكى",
    simulated_note: "يعمل هذا الخادم مع محاكي Graph: لا حاجة إلى حساب فيسبوك. أدخل معرّف رقم هاتف ومعرّف WABA يخدمهما المحاكي.",
    phone_number_id_label: "معرّف رقم الهاتف",
    waba_id_label: "معرّف حساب واتساب للأعمال",
    simulated_button: "تسجيل الدخول (محاكاة)",
    working: "جارٍ ربط رقمك…",
    choose_type_first: "اختر أولًا طريقة الربط.",
    missing_ids: "أدخل المعرّفين، أرقامًا فقط.",
    cancelled: "أُلغي تسجيل الدخول أو أُغلق. انقر الزر للبدء من جديد.",
    no_number: "أنهيت دون رقم هاتف («اسم العرض فقط»). ابدأ من جديد واختر رقم هاتف أو أضفه.",
    sdk_missing: "تعذّر تحميل تسجيل الدخول عبر فيسبوك. تحقّق من اتصالك أو من مانع الإعلانات، ثم أعد تحميل الصفحة.",
    not_configured: "هذا الخادم غير مُعدّ بعد للتسجيل في واتساب. يُرجى إبلاغ الشركة التي أرسلت لك هذا الرابط.",
    expired_title: "انتهت صلاحية رابط الإعداد هذا",
    revoked_title: "لم يعد رابط الإعداد هذا صالحًا",
    used_title: "سبق استخدام رابط الإعداد هذا",
    ask_new_link: "اطلب رابطًا جديدًا من الشركة التي أرسلته.",
    used_body: "رُبط رقم بهذا الرابط من قبل. لربط رقم آخر، اطلب رابطًا جديدًا.",
    not_found_title: "لم يُعثر على رابط الإعداد",
    not_found_body: "تأكّد من أنك فتحت الرابط كاملًا، أو اطلب رابطًا جديدًا من الشركة التي أرسلته.",
    success_title: "تم ربط رقم واتساب الخاص بك",
    success_body: "يمكنك إغلاق هذه الصفحة.",
    failure_title: "لم يكتمل الربط",
    try_again: "حاول مرة أخرى",
    continue_label: "متابعة",
    redirecting: "جارٍ إعادتك…",
    unavailable_title: "حدث خطأ من جهتنا",
    unavailable_body: "يُرجى الانتظار قليلًا ثم المحاولة مرة أخرى.",
    error_code_label: "رمز الخطأ",
    facebook_auth_failed: "لم تؤكّد Meta تسجيل الدخول. حاول مرة أخرى وأكمل كل الخطوات في نافذة Meta.",
    phone_verification_failed: "تعذّر التحقق من رقم الهاتف أو ربطه. تأكّد من اختيار رقم هاتف أو إضافته (وليس «اسم العرض فقط»)، وعند إعادة الربط اختر الرقم نفسه كما في السابق. ثم حاول مرة أخرى.",
    token_exchange_failed: "تعذّر تأكيد تسجيل الدخول عبر Meta (ربما انتهت صلاحيته). حاول مرة أخرى.",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_best_supported() {
        assert_eq!(negotiate(None), "en");
        assert_eq!(negotiate(Some("pt-BR,pt;q=0.9,en;q=0.8")), "pt");
        assert_eq!(negotiate(Some("de-DE,fr;q=0.9")), "en");
        assert_eq!(negotiate(Some("de, es;q=0.5, ar;q=0.7")), "ar");
        assert_eq!(negotiate(Some("hi;q=0, id")), "id");
        assert_eq!(negotiate(Some("*")), "en");
    }
}
