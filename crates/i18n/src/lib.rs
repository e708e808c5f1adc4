//! Partner-facing texts in the partner's language: error diagnostics rex writes itself and the
//! human-readable parts of what it sends partners, in English, Spanish, Arabic, Simplified Chinese
//! and French.
//!
//! The texts live in Fluent files a translator edits (`locales/<lang>/rex.ftl`), embedded in the
//! binary. Code names a text by its id and named arguments with [`msg!`], which gives a
//! [`Message`]; English is always rendered (logs, `OperationOutcome.issue.details.text`, support
//! staff), the partner's language when a response or notification is written.

use std::sync::LazyLock;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource};
use unic_langid::LanguageIdentifier;

mod negotiate;

pub use negotiate::negotiate;

/// A language rex writes partner-facing texts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Lang {
    #[default]
    En,
    Es,
    Ar,
    Zh,
    Fr,
}

impl Lang {
    pub const ALL: [Lang; 5] = [Lang::En, Lang::Es, Lang::Ar, Lang::Zh, Lang::Fr];

    /// The BCP 47 tag rex answers with (`Content-Language`) and its catalogue folder.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Es => "es",
            Lang::Ar => "ar",
            Lang::Zh => "zh",
            Lang::Fr => "fr",
        }
    }

    /// The language a BCP 47 tag asks for, if rex writes it: `es-MX` is Spanish, `zh-CN` and
    /// `zh-Hans` Simplified Chinese; `zh-TW` and `zh-Hant` (Traditional) are not offered.
    pub fn from_tag(tag: &str) -> Option<Lang> {
        let id: LanguageIdentifier = tag.trim().parse().ok()?;
        match id.language.as_str() {
            "en" => Some(Lang::En),
            "es" => Some(Lang::Es),
            "ar" => Some(Lang::Ar),
            "fr" => Some(Lang::Fr),
            "zh" => {
                let traditional = match id.script {
                    Some(script) => script.as_str() == "Hant",
                    None => id.region.is_some_and(|r| matches!(r.as_str(), "TW" | "HK" | "MO")),
                };
                (!traditional).then_some(Lang::Zh)
            }
            _ => None,
        }
    }

    fn source(self) -> &'static str {
        match self {
            Lang::En => include_str!("../locales/en/rex.ftl"),
            Lang::Es => include_str!("../locales/es/rex.ftl"),
            Lang::Ar => include_str!("../locales/ar/rex.ftl"),
            Lang::Zh => include_str!("../locales/zh/rex.ftl"),
            Lang::Fr => include_str!("../locales/fr/rex.ftl"),
        }
    }

    fn index(self) -> usize {
        Lang::ALL.iter().position(|l| *l == self).unwrap_or_default()
    }
}

/// The catalogue, one bundle per language in [`Lang::ALL`] order. A file that does not parse is
/// caught by the tests; at run time its broken entries are left out and English stands in.
static BUNDLES: LazyLock<Vec<FluentBundle<FluentResource>>> = LazyLock::new(|| {
    Lang::ALL
        .iter()
        .map(|lang| {
            let resource = FluentResource::try_new(lang.source().to_string()).unwrap_or_else(|(partial, _)| partial);
            let id: LanguageIdentifier = lang.code().parse().unwrap_or_default();
            let mut bundle = FluentBundle::new_concurrent(vec![id]);
            // No Unicode isolation marks around arguments: they are mostly ids and references a
            // partner copies from the message, and invisible marks would travel with them.
            bundle.set_use_isolating(false);
            let _ = bundle.add_resource(resource);
            bundle
        })
        .collect()
});

/// A text from the catalogue: its id and named arguments, rendered in any [`Lang`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: &'static str,
    pub args: Vec<(&'static str, Arg)>,
}

/// An argument of a [`Message`]: text put in as it is (ids, numbers, a library's error), or
/// another message, rendered in the same language (a reason inside a refusal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Text(String),
    Message(Message),
}

impl<T: std::fmt::Display> From<T> for Arg {
    fn from(value: T) -> Arg {
        Arg::Text(value.to_string())
    }
}

impl From<&Message> for Arg {
    fn from(message: &Message) -> Arg {
        Arg::Message(message.clone())
    }
}

impl From<&Arg> for Arg {
    fn from(arg: &Arg) -> Arg {
        arg.clone()
    }
}

impl Message {
    pub fn new(id: &'static str, args: Vec<(&'static str, Arg)>) -> Message {
        Message { id, args }
    }

    /// The text in `lang`; English where the translation is missing or cannot be formatted.
    pub fn render(&self, lang: Lang) -> String {
        self.try_render(lang).or_else(|| self.try_render(Lang::En)).unwrap_or_else(|| {
            // Unreachable while the catalogue tests pass; still say something useful.
            let args: Vec<String> = self.args.iter().map(|(name, value)| format!("{name}={value:?}")).collect();
            format!("{} ({})", self.id, args.join(", "))
        })
    }

    pub fn english(&self) -> String {
        self.render(Lang::En)
    }

    fn try_render(&self, lang: Lang) -> Option<String> {
        let bundle = &BUNDLES[lang.index()];
        let pattern = bundle.get_message(self.id)?.value()?;
        let mut args = FluentArgs::new();
        for (name, value) in &self.args {
            match value {
                Arg::Text(text) => args.set(*name, text.as_str()),
                Arg::Message(message) => args.set(*name, message.render(lang)),
            }
        }
        let mut errors = Vec::new();
        let text = bundle.format_pattern(pattern, Some(&args), &mut errors);
        errors.is_empty().then(|| text.into_owned())
    }
}

/// What an issue or notification says: a catalogue [`Message`] (rendered per language), or text
/// kept as written (a profile's own message, a library's error) that stays in its language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    pub english: String,
    pub message: Option<Message>,
}

impl Text {
    pub fn render(&self, lang: Lang) -> String {
        match &self.message {
            Some(message) if lang != Lang::En => message.render(lang),
            _ => self.english.clone(),
        }
    }
}

impl From<Message> for Text {
    fn from(message: Message) -> Text {
        Text { english: message.english(), message: Some(message) }
    }
}

impl From<String> for Text {
    fn from(text: String) -> Text {
        Text { english: text, message: None }
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Text {
        Text::from(text.to_string())
    }
}

impl From<&String> for Text {
    fn from(text: &String) -> Text {
        Text::from(text.clone())
    }
}

/// A catalogue [`Message`]: `msg!("id", name = value, other)` (`other` stands for `other = other`);
/// a value is a [`Message`] or anything `Display`. The ids and argument names used here are
/// checked against the catalogue by this crate's tests.
#[macro_export]
macro_rules! msg {
    (@arg $name:ident) => { $crate::Arg::from(&$name) };
    (@arg $name:ident $value:expr) => { $crate::Arg::from(&$value) };
    ($id:literal $(, $name:ident $(= $value:expr)?)* $(,)?) => {
        $crate::Message::new($id, vec![$((stringify!($name), $crate::msg!(@arg $name $($value)?))),*])
    };
}

#[cfg(test)]
mod tests;
