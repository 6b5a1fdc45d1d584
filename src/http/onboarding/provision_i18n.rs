//! The provisioned-number words of the setup page, in its six languages.

pub struct ProvisionStrings {
    pub number_title: &'static str,
    pub reserving: &'static str,
    pub instruction: &'static str,
    pub code_label: &'static str,
    pub waiting_code: &'static str,
    pub code_received: &'static str,
    pub unavailable: &'static str,
    pub sim_title: &'static str,
    pub sim_phone_label: &'static str,
    pub sim_send_code: &'static str,
    pub sim_code_sent: &'static str,
    pub sim_verify: &'static str,
    pub sim_wrong_code: &'static str,
}

pub fn strings(lang: &str) -> &'static ProvisionStrings {
    match lang {
        "es" => &ES,
        "pt" => &PT,
        "hi" => &HI,
        "id" => &ID,
        "ar" => &AR,
        _ => &EN,
    }
}

static EN: ProvisionStrings = ProvisionStrings {
    number_title: "Your new WhatsApp number",
    reserving: "Getting a number for you…",
    instruction: "In Meta's window, choose to add a new phone number and enter this number. Do not choose “Display name only”.",
    code_label: "Verification code",
    waiting_code: "When Meta sends the verification code to this number, it appears here.",
    code_received: "Meta's code reached the number: enter it in Meta's window.",
    unavailable: "No number is available for you right now. This link stays valid: open it again in a few minutes.",
    sim_title: "Simulated Meta phone step",
    sim_phone_label: "Phone number (as you would enter it in Meta's window)",
    sim_send_code: "Send code",
    sim_code_sent: "Meta sent a verification code to the number.",
    sim_verify: "Verify and connect",
    sim_wrong_code: "Meta did not accept that code. Check it and try again.",
};

static ES: ProvisionStrings = ProvisionStrings {
    number_title: "Tu nuevo número de WhatsApp",
    reserving: "Obteniendo un número para ti…",
    instruction: "En la ventana de Meta, elige agregar un número de teléfono nuevo e ingresa este número. No elijas “Solo nombre visible” (Display name only).",
    code_label: "Código de verificación",
    waiting_code: "Cuando Meta envíe el código de verificación a este número, aparecerá aquí.",
    code_received: "El código de Meta llegó al número: ingrésalo en la ventana de Meta.",
    unavailable: "No hay un número disponible para ti ahora. Este enlace sigue siendo válido: ábrelo de nuevo en unos minutos.",
    sim_title: "Paso de teléfono de Meta simulado",
    sim_phone_label: "Número de teléfono (como lo ingresarías en la ventana de Meta)",
    sim_send_code: "Enviar código",
    sim_code_sent: "Meta envió un código de verificación al número.",
    sim_verify: "Verificar y conectar",
    sim_wrong_code: "Meta no aceptó ese código. Revísalo e inténtalo de nuevo.",
};

static PT: ProvisionStrings = ProvisionStrings {
    number_title: "Seu novo número do WhatsApp",
    reserving: "Obtendo um número para você…",
    instruction: "Na janela da Meta, escolha adicionar um novo número de telefone e digite este número. Não escolha “Somente nome de exibição” (Display name only).",
    code_label: "Código de verificação",
    waiting_code: "Quando a Meta enviar o código de verificação para este número, ele aparecerá aqui.",
    code_received: "O código da Meta chegou ao número: digite-o na janela da Meta.",
    unavailable: "Nenhum número está disponível para você agora. Este link continua válido: abra-o de novo em alguns minutos.",
    sim_title: "Etapa de telefone da Meta simulada",
    sim_phone_label: "Número de telefone (como você digitaria na janela da Meta)",
    sim_send_code: "Enviar código",
    sim_code_sent: "A Meta enviou um código de verificação para o número.",
    sim_verify: "Verificar e conectar",
    sim_wrong_code: "A Meta não aceitou esse código. Confira e tente de novo.",
};

static HI: ProvisionStrings = ProvisionStrings {
    number_title: "आपका नया WhatsApp नंबर",
    reserving: "आपके लिए एक नंबर लिया जा रहा है…",
    instruction: "Meta की विंडो में नया फ़ोन नंबर जोड़ना चुनें और यह नंबर डालें। “Display name only” (केवल डिस्प्ले नाम) न चुनें।",
    code_label: "सत्यापन कोड",
    waiting_code: "जब Meta इस नंबर पर सत्यापन कोड भेजेगा, वह यहाँ दिखेगा।",
    code_received: "Meta का कोड नंबर पर आ गया है: इसे Meta की विंडो में डालें।",
    unavailable: "अभी आपके लिए कोई नंबर उपलब्ध नहीं है। यह लिंक मान्य रहेगा: कुछ मिनट बाद इसे फिर खोलें।",
    sim_title: "सिम्युलेटेड Meta फ़ोन चरण",
    sim_phone_label: "फ़ोन नंबर (जैसे आप Meta की विंडो में डालते)",
    sim_send_code: "कोड भेजें",
    sim_code_sent: "Meta ने नंबर पर सत्यापन कोड भेजा है।",
    sim_verify: "सत्यापित करें और जोड़ें",
    sim_wrong_code: "Meta ने यह कोड स्वीकार नहीं किया। जाँचें और फिर कोशिश करें।",
};

static ID: ProvisionStrings = ProvisionStrings {
    number_title: "Nomor WhatsApp baru Anda",
    reserving: "Mencarikan nomor untuk Anda…",
    instruction: "Di jendela Meta, pilih untuk menambahkan nomor telepon baru dan masukkan nomor ini. Jangan pilih “Hanya nama tampilan” (Display name only).",
    code_label: "Kode verifikasi",
    waiting_code: "Saat Meta mengirim kode verifikasi ke nomor ini, kode akan muncul di sini.",
    code_received: "Kode dari Meta sudah sampai ke nomor: masukkan di jendela Meta.",
    unavailable: "Saat ini tidak ada nomor yang tersedia untuk Anda. Tautan ini tetap berlaku: buka lagi dalam beberapa menit.",
    sim_title: "Langkah telepon Meta simulasi",
    sim_phone_label: "Nomor telepon (seperti yang akan Anda masukkan di jendela Meta)",
    sim_send_code: "Kirim kode",
    sim_code_sent: "Meta mengirim kode verifikasi ke nomor tersebut.",
    sim_verify: "Verifikasi dan hubungkan",
    sim_wrong_code: "Meta tidak menerima kode itu. Periksa dan coba lagi.",
};

static AR: ProvisionStrings = ProvisionStrings {
    number_title: "رقم واتساب الجديد الخاص بك",
    reserving: "جارٍ الحصول على رقم لك…",
    instruction: "في نافذة Meta، اختر إضافة رقم هاتف جديد وأدخل هذا الرقم. لا تختر “اسم العرض فقط” (Display name only).",
    code_label: "رمز التحقق",
    waiting_code: "عندما ترسل Meta رمز التحقق إلى هذا الرقم، سيظهر هنا.",
    code_received: "وصل رمز Meta إلى الرقم: أدخله في نافذة Meta.",
    unavailable: "لا يوجد رقم متاح لك الآن. يظل هذا الرابط صالحًا: افتحه مرة أخرى بعد بضع دقائق.",
    sim_title: "خطوة هاتف Meta محاكاة",
    sim_phone_label: "رقم الهاتف (كما ستدخله في نافذة Meta)",
    sim_send_code: "إرسال الرمز",
    sim_code_sent: "أرسلت Meta رمز تحقق إلى الرقم.",
    sim_verify: "تحقق واربط",
    sim_wrong_code: "لم تقبل Meta هذا الرمز. تحقق منه وحاول مرة أخرى.",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_its_own_words() {
        for lang in crate::domain::setup_links::LANGUAGES {
            let s = strings(lang);
            assert!(!s.instruction.is_empty());
            assert!(s.instruction.contains("Display name only") || lang == "en");
            if lang != "en" {
                assert_ne!(s.number_title, EN.number_title, "{lang}");
            }
        }
    }
}
