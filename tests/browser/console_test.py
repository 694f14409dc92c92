"""Drives the operator's console in headless Chromium (selenium, chromedriver).

Run by tests/tests/console.rs with: BASE_URL CAIRN_BINARY SERVICE_DIR SCREENSHOT.
As root: log in, see the databases, take `docs` offline with its button, start a backup
and watch its progress bar reach 100%, see the banner follow a READ_ONLY set by an admin
with the CLI; then as alice (a read grant on `docs`): no admin controls. The browser's
console must hold no error. Prints one line per step; exits non-zero on a failure.
"""

import subprocess
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

BASE_URL, CAIRN, SERVICE_DIR, SCREENSHOT = sys.argv[1:5]
WAIT = 30


def browser():
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--ignore-certificate-errors", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def step(text):
    print("step:", text, flush=True)


def log_in(driver, user, password):
    wait = WebDriverWait(driver, WAIT)
    wait.until(ec.visibility_of_element_located((By.ID, "login")))
    driver.find_element(By.ID, "user").clear()
    driver.find_element(By.ID, "user").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login-button").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "who"), user))


def db_state(driver, name):
    """The state the page shows for `name` (None while a refresh redraws the table)."""
    try:
        return driver.find_element(By.CSS_SELECTOR, f'tr[data-db="{name}"] td.state').text
    except StaleElementReferenceException:
        return None


def main():
    driver = browser()
    # The page redraws its tables every two seconds: an element may go stale.
    wait = WebDriverWait(driver, WAIT, ignored_exceptions=[StaleElementReferenceException])
    try:
        driver.get(BASE_URL + "/ui")
        assert driver.current_url.endswith("/_ui/"), driver.current_url
        step("the console is at /_ui/")

        log_in(driver, "root", "console-root-pw")
        assert "(admin)" in driver.find_element(By.ID, "who").text
        assert not driver.find_element(By.ID, "login").is_displayed()
        step("logged in as root")

        wait.until(lambda d: db_state(d, "docs") == "Online")
        driver.find_element(By.CSS_SELECTOR, 'button[data-db="docs"][data-action="offline"]').click()
        wait.until(ec.alert_is_present())
        driver.switch_to.alert.accept()
        wait.until(lambda d: db_state(d, "docs") == "Offline")
        step("docs went offline after its button")

        driver.find_element(By.ID, "backup-name").send_keys("from-the-console")
        driver.find_element(By.ID, "backup-start").click()

        def backup_done(d):
            for row in d.find_elements(By.CSS_SELECTOR, "#jobs tbody tr"):
                cells = row.find_elements(By.TAG_NAME, "td")
                if cells and cells[1].text == "BACKUP" and cells[2].text == "COMPLETED":
                    return row.find_element(By.CSS_SELECTOR, ".percent").text.strip()
            return False

        assert wait.until(backup_done) == "100%"
        wait.until(lambda d: "from-the-console" in d.find_element(By.ID, "restore-name").text)
        step("the backup's progress bar reached 100%")

        subprocess.run([CAIRN, "--dir", SERVICE_DIR, "status", "set", "READ_ONLY",
                        "--message", "disks are being moved"], check=True, capture_output=True)
        wait.until(ec.text_to_be_present_in_element((By.ID, "banner"), "disks are being moved"))
        banner = driver.find_element(By.ID, "banner")
        assert "READ_ONLY" in banner.text and "READ_ONLY" in banner.get_attribute("class")
        step("the banner shows READ_ONLY and its message")

        driver.save_screenshot(SCREENSHOT)
        step("screenshot " + SCREENSHOT)

        driver.find_element(By.ID, "logout").click()
        log_in(driver, "alice", "alice-pw-1")
        wait.until(lambda d: db_state(d, "docs") == "Offline")
        assert not driver.find_element(By.ID, "jobs-view").is_displayed()
        assert not driver.find_element(By.ID, "status-form").is_displayed()
        assert not driver.find_elements(By.CSS_SELECTOR, "button[data-db]")
        step("alice sees the databases and no admin control")

        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        step("no error in the browser's console")
    except Exception:
        # What the page and the browser said, for the failure's report.
        print("page error box:", driver.find_element(By.ID, "error").text, flush=True)
        print("browser log:", driver.get_log("browser"), flush=True)
        driver.save_screenshot(SCREENSHOT)
        raise
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
