//! `verify = { … }` of a `[git.NAME]` table: Flux's mode names, the key
//! files, and a tag mode only where the source follows a tag.

use toml::Spanned;

use super::raw::{RawGitRef, RawGitVerify};
use super::validate::Checker;
use super::{GitVerify, VerifyMode};

impl Checker<'_> {
    pub(super) fn git_verify(
        &mut self,
        key: &str,
        raw: &Spanned<RawGitVerify>,
        reference: Option<&Spanned<RawGitRef>>,
    ) -> Option<GitVerify> {
        let key = format!("{key}.verify");
        let before = self.problems.len();
        let verify = raw.get_ref();
        let mode = match &verify.mode {
            Some(mode) => self.verify_mode(mode, &key),
            None => Some(VerifyMode::Head),
        };
        let file = |this: &mut Self, value: &Option<Spanned<String>>, field: &str| {
            value
                .as_ref()
                .and_then(|v| this.absolute_path(v, &format!("{key}.{field}"), true))
        };
        let ssh_allowed_signers_file = file(
            self,
            &verify.ssh_allowed_signers_file,
            "ssh_allowed_signers_file",
        );
        let gpg_keyring_file = file(self, &verify.gpg_keyring_file, "gpg_keyring_file");
        if verify.ssh_allowed_signers_file.is_none() && verify.gpg_keyring_file.is_none() {
            self.problem(
                raw.span(),
                &key,
                "give the trusted keys: ssh_allowed_signers_file, gpg_keyring_file or both",
            );
        }
        if let (Some(mode), Some(span)) = (mode, &verify.mode) {
            if mode.verifies_tag() && !follows_a_tag(reference) {
                self.problem(
                    span.span(),
                    &format!("{key}.mode"),
                    format!(
                        "mode {:?} verifies the tag the source follows: give ref.tag or ref.semver, or use \"HEAD\"",
                        mode.as_str()
                    ),
                );
            }
        }
        (self.problems.len() == before).then_some(GitVerify {
            mode: mode?,
            ssh_allowed_signers_file,
            gpg_keyring_file,
        })
    }

    fn verify_mode(&mut self, mode: &Spanned<String>, key: &str) -> Option<VerifyMode> {
        let parsed = [VerifyMode::Head, VerifyMode::Tag, VerifyMode::TagAndHead]
            .into_iter()
            .find(|known| known.as_str() == mode.get_ref());
        if parsed.is_none() {
            self.problem(
                mode.span(),
                &format!("{key}.mode"),
                format!(
                    "unknown mode {:?}: use \"HEAD\", \"Tag\" or \"TagAndHEAD\"",
                    mode.get_ref()
                ),
            );
        }
        parsed
    }
}

fn follows_a_tag(reference: Option<&Spanned<RawGitRef>>) -> bool {
    reference.is_some_and(|r| r.get_ref().tag.is_some() || r.get_ref().semver.is_some())
}
