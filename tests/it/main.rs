//! One integration test binary: the real bot against a local Slack fake.
//! Each module is a set of user stories.

mod bad_input;
mod check;
mod cli;
mod closing;
mod commands;
mod commands_slash;
mod controls;
mod crash;
mod drill;
mod faults;
mod fix;
mod forges;
mod grid;
mod heal;
mod healing;
mod helpers;
mod home;
mod ignoring;
mod layouts;
mod llm;
mod replicas;
mod resilience;
mod service;
mod shortcut;
