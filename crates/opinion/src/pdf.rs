//! The opinion as an A4 PDF, drawn with krilla. krilla draws glyphs; what it leaves to us, and
//! this module does, is choosing a font per character (DejaVu Sans for Latin, Greek, Cyrillic,
//! Arabic and Hebrew; Droid Sans Fallback for Chinese, Japanese and Korean), ordering mixed
//! left-to-right and right-to-left text by the Unicode bidirectional algorithm, shaping each run
//! with rustybuzz (Arabic letters join), and wrapping paragraphs to the page width. The fonts are
//! embedded in the binary and subset into each PDF, so a document is readable and searchable
//! (the text is in the PDF, not pictures of it) wherever it is opened.

use std::sync::LazyLock;

use krilla::Document;
use krilla::geom::Point;
use krilla::metadata::Metadata;
use krilla::page::PageSettings;
use krilla::surface::Surface;
use krilla::text::{Font, GlyphId, KrillaGlyph};
use rustybuzz::{Direction, Face, UnicodeBuffer};
use unicode_bidi::BidiInfo;

use crate::document::Opinion;

/// A4 in points.
const PAGE_WIDTH: f32 = 595.0;
const PAGE_HEIGHT: f32 = 842.0;
const MARGIN: f32 = 56.0;
const TEXT_WIDTH: f32 = PAGE_WIDTH - 2.0 * MARGIN;

/// One font: what krilla embeds and what rustybuzz shapes with (the same bytes).
struct Typeface {
    font: Font,
    face: Face<'static>,
}

impl Typeface {
    fn load(data: &'static [u8]) -> Typeface {
        // The fonts are part of the binary: failing to read one is a build defect, not a runtime case.
        let font = Font::new(data.into(), 0).expect("embedded font is a valid TrueType font");
        let face = Face::from_slice(data, 0).expect("embedded font is a valid TrueType font");
        Typeface { font, face }
    }

    fn covers(&self, c: char) -> bool {
        self.face.glyph_index(c).is_some()
    }
}

static REGULAR: LazyLock<Typeface> = LazyLock::new(|| Typeface::load(include_bytes!("../fonts/DejaVuSans.ttf")));
static BOLD: LazyLock<Typeface> = LazyLock::new(|| Typeface::load(include_bytes!("../fonts/DejaVuSans-Bold.ttf")));
static CJK: LazyLock<Typeface> = LazyLock::new(|| Typeface::load(include_bytes!("../fonts/DroidSansFallback.ttf")));

/// A text style: the first font, the size in points.
#[derive(Clone, Copy)]
struct Style {
    bold: bool,
    size: f32,
}

const TITLE: Style = Style { bold: true, size: 18.0 };
const LABEL: Style = Style { bold: true, size: 10.0 };
const BODY: Style = Style { bold: false, size: 11.0 };
const SMALL: Style = Style { bold: false, size: 8.5 };

impl Style {
    /// The font for `c`: the style's own, or the CJK font for what it lacks (a character no
    /// font has is drawn from the first, as its "missing glyph" box).
    fn typeface(self, c: char) -> &'static Typeface {
        let first: &'static Typeface = if self.bold { &BOLD } else { &REGULAR };
        if first.covers(c) || !CJK.covers(c) { first } else { &CJK }
    }

    fn line_height(self) -> f32 {
        self.size * 1.35
    }
}

/// A run of text in one font and one direction, shaped.
struct Piece<'a> {
    typeface: &'static Typeface,
    text: &'a str,
    glyphs: Vec<KrillaGlyph>,
    /// In points.
    width: f32,
}

fn shape<'a>(typeface: &'static Typeface, text: &'a str, rtl: bool, size: f32) -> Piece<'a> {
    let mut buffer = UnicodeBuffer::new();
    buffer.push_str(text);
    buffer.guess_segment_properties();
    buffer.set_direction(if rtl { Direction::RightToLeft } else { Direction::LeftToRight });
    let output = rustybuzz::shape(&typeface.face, &[], buffer);
    let units = typeface.face.units_per_em() as f32;
    // A glyph stands for the text from its cluster to the next cluster in logical order.
    let mut clusters: Vec<usize> = output.glyph_infos().iter().map(|i| i.cluster as usize).collect();
    clusters.sort_unstable();
    clusters.dedup();
    let mut width = 0.0;
    let glyphs = output
        .glyph_infos()
        .iter()
        .zip(output.glyph_positions())
        .map(|(info, position)| {
            let start = info.cluster as usize;
            let end = clusters.iter().copied().find(|c| *c > start).unwrap_or(text.len());
            width += position.x_advance as f32 / units * size;
            KrillaGlyph::new(
                GlyphId::new(info.glyph_id),
                position.x_advance as f32 / units,
                position.x_offset as f32 / units,
                position.y_offset as f32 / units,
                position.y_advance as f32 / units,
                start..end,
                None,
            )
        })
        .collect();
    Piece { typeface, text, glyphs, width }
}

/// Splits `text` where the font changes (spaces stay with the run they are in).
fn font_runs(text: &str, style: Style) -> Vec<(&'static Typeface, &str)> {
    let mut runs: Vec<(&'static Typeface, &str)> = Vec::new();
    let mut start = 0;
    let mut current: Option<&'static Typeface> = None;
    for (index, c) in text.char_indices() {
        if c.is_whitespace() {
            continue;
        }
        let typeface = style.typeface(c);
        match current {
            Some(font) if std::ptr::eq(font, typeface) => {}
            Some(font) => {
                runs.push((font, &text[start..index]));
                start = index;
                current = Some(typeface);
            }
            None => current = Some(typeface),
        }
    }
    runs.push((current.unwrap_or_else(|| style.typeface(' ')), &text[start..]));
    runs
}

/// A line's pieces in visual order (left to right), and whether its paragraph is right-to-left.
fn layout_line(line: &str, style: Style) -> (Vec<Piece<'_>>, bool) {
    let bidi = BidiInfo::new(line, None);
    let Some(paragraph) = bidi.paragraphs.first() else { return (Vec::new(), false) };
    let (levels, runs) = bidi.visual_runs(paragraph, paragraph.range.clone());
    let mut pieces = Vec::new();
    for run in runs {
        let rtl = levels[run.start].is_rtl();
        let mut shaped: Vec<Piece> =
            font_runs(&line[run], style).into_iter().map(|(font, text)| shape(font, text, rtl, style.size)).collect();
        if rtl {
            shaped.reverse();
        }
        pieces.extend(shaped);
    }
    (pieces, paragraph.level.is_rtl())
}

fn width_of(text: &str, style: Style) -> f32 {
    font_runs(text, style).into_iter().map(|(font, text)| shape(font, text, false, style.size).width).sum()
}

/// Whether a line may break before `c` without a space: between ideographs and kana.
fn breaks_around(c: char) -> bool {
    matches!(c as u32, 0x2E80..=0x9FFF | 0xF900..=0xFAFF | 0xFF00..=0xFFEF | 0x20000..=0x3FFFF)
}

/// The paragraph's words with the space after each: the units lines are filled with.
fn words(paragraph: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut start = 0;
    let mut previous: Option<char> = None;
    for (index, c) in paragraph.char_indices() {
        let after_space = previous.is_some_and(char::is_whitespace) && !c.is_whitespace();
        let ideographic = index > start && (breaks_around(c) || previous.is_some_and(breaks_around));
        if index > start && (after_space || (ideographic && !c.is_whitespace())) {
            words.push(&paragraph[start..index]);
            start = index;
        }
        previous = Some(c);
    }
    if start < paragraph.len() {
        words.push(&paragraph[start..]);
    }
    words
}

/// Wraps a paragraph to `width` points. A word longer than a line is cut between characters.
fn wrap(paragraph: &str, style: Style, width: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut line_width = 0.0;
    for word in words(paragraph) {
        let word_width = width_of(word.trim_end(), style);
        if !line.is_empty() && line_width + word_width > width {
            lines.push(std::mem::take(&mut line).trim_end().to_string());
            line_width = 0.0;
        }
        if word_width > width {
            for c in word.chars() {
                let char_width = width_of(c.encode_utf8(&mut [0; 4]), style);
                if !line.is_empty() && line_width + char_width > width {
                    lines.push(std::mem::take(&mut line));
                    line_width = 0.0;
                }
                line.push(c);
                line_width += char_width;
            }
        } else {
            line.push_str(word);
            line_width += width_of(word, style);
        }
    }
    if !line.trim().is_empty() {
        lines.push(line.trim_end().to_string());
    }
    lines
}

/// Pages filled from the top, a new one when the next line does not fit.
struct Writer {
    document: Document,
    pages: Vec<Vec<(f32, String, Style)>>,
    y: f32,
}

impl Writer {
    fn new() -> Writer {
        Writer { document: Document::new(), pages: vec![Vec::new()], y: MARGIN }
    }

    fn line(&mut self, text: String, style: Style) {
        if self.y + style.line_height() > PAGE_HEIGHT - MARGIN {
            self.pages.push(Vec::new());
            self.y = MARGIN;
        }
        self.y += style.line_height();
        let y = self.y;
        if let Some(page) = self.pages.last_mut() {
            page.push((y, text, style));
        }
    }

    fn paragraph(&mut self, text: &str, style: Style) {
        for paragraph in text.lines() {
            for line in wrap(paragraph, style, TEXT_WIDTH) {
                self.line(line, style);
            }
        }
    }

    fn gap(&mut self, points: f32) {
        self.y += points;
    }

    fn section(&mut self, label: &str, text: &str) {
        if text.trim().is_empty() {
            return;
        }
        self.gap(6.0);
        self.line(label.to_string(), LABEL);
        self.paragraph(text, BODY);
    }

    fn finish(mut self, footer: &str) -> Result<Vec<u8>, String> {
        let count = self.pages.len();
        for (number, lines) in self.pages.into_iter().enumerate() {
            let settings = PageSettings::from_wh(PAGE_WIDTH, PAGE_HEIGHT).ok_or("invalid page size")?;
            let mut page = self.document.start_page_with(settings);
            let mut surface = page.surface();
            for (y, text, style) in &lines {
                draw_line(&mut surface, text, *style, *y);
            }
            let footer = format!("{footer} · {}/{count}", number + 1);
            draw_line(&mut surface, &footer, SMALL, PAGE_HEIGHT - MARGIN / 2.0);
            surface.finish();
            page.finish();
        }
        self.document.finish().map_err(|e| format!("the PDF could not be written: {e:?}"))
    }
}

fn draw_line(surface: &mut Surface, text: &str, style: Style, baseline: f32) {
    let (pieces, rtl) = layout_line(text, style);
    let width: f32 = pieces.iter().map(|p| p.width).sum();
    let mut x = if rtl { MARGIN + TEXT_WIDTH - width } else { MARGIN };
    for piece in pieces {
        surface.draw_glyphs(
            Point::from_xy(x, baseline),
            &piece.glyphs,
            piece.typeface.font.clone(),
            piece.text,
            style.size,
            false,
        );
        x += piece.width;
    }
}

/// The opinion as a PDF document.
pub fn render(opinion: &Opinion) -> Result<Vec<u8>, String> {
    let mut writer = Writer::new();
    writer.document.set_metadata(Metadata::new().title(opinion.title.clone()).creator("rex".into()));
    writer.line(opinion.title.clone(), TITLE);
    writer.paragraph(&opinion.issuer, SMALL);
    writer.gap(8.0);
    writer.section("Patient", &opinion.patient);
    writer.section("Referral", &opinion.referral);
    writer.section("Question", &opinion.question);
    writer.section("Conclusion", &opinion.conclusion);
    writer.section("Coded conclusion", &opinion.codes.join("\n"));
    writer.section("Specialist", &opinion.specialist);
    writer.section("Issued", &opinion.issued);
    writer.finish(&opinion.footer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_break_at_spaces_and_between_ideographs() {
        assert_eq!(words("Surgery advised soon"), ["Surgery ", "advised ", "soon"]);
        assert_eq!(words("建议手术"), ["建", "议", "手", "术"]);
        assert_eq!(words("ECG 正常 ok"), ["ECG ", "正", "常 ", "ok"]);
    }

    #[test]
    fn long_paragraphs_wrap_to_the_width() {
        let text = "word ".repeat(200);
        let lines = wrap(&text, BODY, TEXT_WIDTH);
        assert!(lines.len() > 5);
        assert!(lines.iter().all(|l| width_of(l, BODY) <= TEXT_WIDTH + 0.01));
        let unbroken = "x".repeat(400);
        assert!(wrap(&unbroken, BODY, TEXT_WIDTH).iter().all(|l| width_of(l, BODY) <= TEXT_WIDTH + 0.01));
    }

    #[test]
    fn each_script_gets_a_font_that_has_it() {
        let runs = font_runs("Dr. 王 أحمد", BODY);
        assert_eq!(runs.len(), 3, "Latin, then CJK, then back to DejaVu for Arabic");
        assert!(std::ptr::eq(runs[1].0, &*CJK));
        for (font, text) in runs {
            assert!(text.chars().filter(|c| !c.is_whitespace()).all(|c| font.covers(c)), "{text}");
        }
    }

    #[test]
    fn arabic_is_joined_and_laid_out_right_to_left() {
        let (pieces, rtl) = layout_line("محمد", BODY);
        assert!(rtl);
        let isolated: Vec<u16> =
            "محمد".chars().map(|c| REGULAR.face.glyph_index(c).map(|g| g.0).unwrap_or_default()).collect();
        let shaped: Vec<u32> = pieces[0].glyphs.iter().map(|g| g.glyph_id.to_u32()).collect();
        assert!(shaped.iter().zip(isolated.iter().rev()).any(|(s, i)| *s != u32::from(*i)), "contextual forms used");
    }
}

#[cfg(test)]
mod document_tests {
    use super::*;

    /// The text poppler's `pdftotext` (a real PDF reader) extracts, or `None` where it is not
    /// installed outside CI (`.ci/run` installs it: Debian `poppler-utils`).
    fn text_of(pdf: &[u8]) -> Option<String> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let child = Command::new("pdftotext").args(["-", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(_) if std::env::var_os("CI").is_none() => {
                eprintln!("SKIPPED: reading the opinion PDF needs pdftotext (Debian: apt-get install poppler-utils)");
                return None;
            }
            Err(err) => panic!("pdftotext: {err}"),
        };
        child.stdin.take().unwrap().write_all(pdf).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "pdftotext cannot read the PDF: {}", String::from_utf8_lossy(&output.stderr));
        Some(String::from_utf8(output.stdout).unwrap())
    }

    #[test]
    fn the_pdf_parses_and_holds_the_text_in_every_script() {
        let opinion = Opinion {
            title: "Second opinion".into(),
            patient: "محمد العلي · born 1950-01-02".into(),
            question: "Is TAVI preferable to surgery?".into(),
            conclusion: "Surgery advised. 建议手术. يوصى بالجراحة".into(),
            codes: vec!["Aortic valve stenosis (SNOMED CT 60573004)".into()],
            specialist: "Dr. Zoë Müller".into(),
            issued: "2026-12-04T10:00:00Z".into(),
            footer: "DiagnosticReport/r1".into(),
            ..Opinion::default()
        };
        let pdf = render(&opinion).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        let Some(text) = text_of(&pdf) else { return };
        for expected in [
            "Surgery advised.",
            "建议手术",
            "يوصى بالجراحة",
            "Is TAVI preferable to surgery?",
            "Zoë Müller",
            "60573004",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from {text:?}");
        }
    }

    #[test]
    fn a_long_opinion_runs_over_pages() {
        let opinion = Opinion {
            conclusion: "A finding worth explaining. ".repeat(600),
            footer: "DiagnosticReport/r2".into(),
            ..Opinion::default()
        };
        let Some(text) = text_of(&render(&opinion).unwrap()) else { return };
        assert!(text.contains("DiagnosticReport/r2 · 2/"), "a second page: {text}");
    }
}
