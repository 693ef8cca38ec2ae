//! `beckon demo`: an organization, token, project and Live survey to try Beckon with.

use crate::commands::token::Secret;
use crate::output::Report;
use anyhow::Context as _;
use beckon_domain::LifecycleEvent;
use beckon_domain::scope::Scope;
use beckon_domain::survey::{
    DEFAULT_LIFETIME_SECONDS, DEFAULT_REMINDER_LEAD_SECONDS, Question, QuestionKind, SurveyStatus,
    SurveyTrigger,
};
use beckon_store::surveys::{self, NewSurvey};
use beckon_store::tenancy;
use serde::Serialize;
use std::io::{self, Write};
use uuid::Uuid;

/// What the demo made.
#[derive(Debug, Serialize)]
pub struct Demo {
    pub org_id: Uuid,
    pub token_id: Uuid,
    /// The organization's admin token, shown this once.
    pub token: Secret,
    pub project_id: Uuid,
    pub survey_id: Uuid,
}

impl Report for Demo {
    fn table(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "org_id      {}", self.org_id)?;
        writeln!(out, "token_id    {}", self.token_id)?;
        writeln!(out, "token       {}", self.token.0)?;
        writeln!(out, "project_id  {}", self.project_id)?;
        writeln!(out, "survey_id   {}", self.survey_id)
    }
}

pub async fn create(conn: &mut beckon_store::Conn) -> anyhow::Result<Demo> {
    let org = tenancy::create_organization(conn, "Demo")
        .await
        .context("Failed to create the demo organization")?;
    let (token, plaintext) =
        tenancy::create_token(conn, org.id, "demo", &[Scope::Admin], None, None)
            .await
            .context("Failed to create the demo token")?;
    let project = tenancy::create_project(conn, org.id, "Demo app")
        .await
        .context("Failed to create the demo project")?;
    let survey = surveys::create_survey(
        conn,
        NewSurvey {
            org_id: org.id,
            project_id: project.id,
            name: "Why are you leaving?".into(),
            status: SurveyStatus::Live,
            questions: vec![
                Question {
                    id: "nps".into(),
                    title: "How likely are you to recommend us to a friend?".into(),
                    required: true,
                    tags: Vec::new(),
                    kind: QuestionKind::Nps,
                },
                Question {
                    id: "reason".into(),
                    title: "What is the main reason you cancelled?".into(),
                    required: false,
                    tags: Vec::new(),
                    kind: QuestionKind::Mcq {
                        options: vec![
                            "Price".into(),
                            "Missing features".into(),
                            "Switched tools".into(),
                        ],
                    },
                },
                Question {
                    id: "more".into(),
                    title: "Anything else we should know?".into(),
                    required: false,
                    tags: Vec::new(),
                    kind: QuestionKind::Text,
                },
            ],
            trigger: SurveyTrigger {
                events: vec![
                    LifecycleEvent::SubscriptionCancelled,
                    LifecycleEvent::from_name("payment_failed")?,
                ],
                conditions: None,
            },
            cooldown_seconds: 0,
            sample_rate: 1.0,
            sample_by: Default::default(),
            invitation_lifetime_seconds: DEFAULT_LIFETIME_SECONDS,
            trial_reminder_lead_seconds: DEFAULT_REMINDER_LEAD_SECONDS,
        },
    )
    .await
    .context("Failed to create the demo survey")?;
    Ok(Demo {
        org_id: org.id,
        token_id: token.id,
        token: Secret(plaintext.expose().to_owned()),
        project_id: project.id,
        survey_id: survey.id,
    })
}
