// kafka-admin.java: SCRAM users and ACLs in one Admin-client session, for
// scripts/dev-stack's secure mode (one JVM instead of one per ACL).
//   java -cp '<kafka jars>/*' scripts/kafka-admin.java CLIENT.properties < SPEC
// SPEC, one a line ('#' comments):
//   user NAME PASSWORD_FILE                      SCRAM-SHA-512 credential (upsert)
//   allow USER OPERATION RESOURCE PATTERN NAME   e.g. allow api WRITE TOPIC PREFIXED warren.host.
import java.io.BufferedReader;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class KafkaAdmin {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        try (InputStream in = Files.newInputStream(Path.of(args[0]))) {
            props.load(in);
        }
        List<UserScramCredentialAlteration> users = new ArrayList<>();
        List<AclBinding> acls = new ArrayList<>();
        BufferedReader reader = new BufferedReader(new InputStreamReader(System.in));
        for (String line; (line = reader.readLine()) != null;) {
            line = line.trim();
            if (line.isEmpty() || line.startsWith("#"))
                continue;
            String[] f = line.split("\\s+");
            if (f[0].equals("user") && f.length == 3) {
                String password = Files.readString(Path.of(f[2])).trim();
                users.add(new UserScramCredentialUpsertion(f[1],
                        new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), password));
            } else if (f[0].equals("allow") && f.length == 6) {
                ResourcePattern resource = new ResourcePattern(ResourceType.fromString(f[3]), f[5],
                        PatternType.fromString(f[4]));
                AclOperation operation = AclOperation.fromString(f[2]);
                if (resource.resourceType() == ResourceType.UNKNOWN || operation == AclOperation.UNKNOWN
                        || resource.patternType() == PatternType.UNKNOWN)
                    throw new IllegalArgumentException("bad ACL line: " + line);
                acls.add(new AclBinding(resource, new AccessControlEntry("User:" + f[1], "*", operation,
                        AclPermissionType.ALLOW)));
            } else {
                throw new IllegalArgumentException("bad line: " + line);
            }
        }
        try (Admin admin = Admin.create(props)) {
            if (!users.isEmpty())
                admin.alterUserScramCredentials(users).all().get();
            if (!acls.isEmpty())
                admin.createAcls(acls).all().get();
        }
        System.out.println("kafka-admin: " + users.size() + " user(s), " + acls.size() + " ACL(s)");
    }
}
