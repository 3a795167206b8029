//! The contacts scenarios and the contacts model-based test, on every backend.

use crmkit_testkit::contacts;

store_suite!(contacts, contacts::modules, contacts_check_names);

store_property!(contacts_model_based: contacts::model_based, contacts::modules);
